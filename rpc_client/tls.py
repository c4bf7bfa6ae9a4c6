"""Mutual TLS between masters and nodes: the settings and the SSL contexts of both sides.

Both sides present a certificate signed by the cluster CA and accept only peers whose
certificate that CA signed; TLS 1.2 is the oldest version spoken.  A node may further
restrict which clients may do what by their certificates (noded.policy).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: the roles a certificate's subject names (its organizational unit), by ``rpc-cli certs
#: issue --node | --master | --masterd``; ganeti-masterd allows procedures by them
NODE_ROLE: Final = "node"
OPERATOR_ROLE: Final = "operator"
MASTERD_ROLE: Final = "masterd"


@dataclass(frozen=True, kw_only=True)
class TLSConfig:
    """A certificate, its key, and the CA that signs the peers' certificates.

    ``server_name``: the name a node's certificate must carry (default: the node's name
    for a cluster with one certificate per node); ``verify_name=False`` for a cluster
    that shares one certificate among its nodes, as Ganeti does.
    """

    cert: Path
    key: Path
    ca: Path
    verify_name: bool = True
    server_name: str | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str) -> TLSConfig:
        """From a ``{cert, key, ca[, verify_name, server_name]}`` table of a nodes file."""
        unknown = set(values) - {"cert", "key", "ca", "verify_name", "server_name"}
        missing = {"cert", "key", "ca"} - set(values)
        if unknown or missing:
            raise ValueError(
                f"{where}: tls needs cert, key and ca (unknown: {sorted(unknown)}, "
                f"missing: {sorted(missing)})"
            )
        return cls(
            cert=Path(values["cert"]),
            key=Path(values["key"]),
            ca=Path(values["ca"]),
            verify_name=bool(values.get("verify_name", True)),
            server_name=values.get("server_name"),
        )

    def client_context(self) -> ssl.SSLContext:
        """For a master: present our certificate, verify the node's against the CA."""
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA {self.ca}: {_reason(exc)}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.verify_name
        try:
            context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load the certificate {self.cert} with the key {self.key}: {_reason(exc)}"
            ) from exc
        return context


def _reason(exc: Exception) -> str:
    """What went wrong loading TLS material, in words."""
    if isinstance(exc, ssl.SSLError) and "KEY_VALUES_MISMATCH" in str(exc):
        return "the key does not belong to the certificate"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return str(getattr(exc, "reason", None) or exc)


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """For a node: TLS 1.2+, and a client certificate signed by ``ca`` is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    # No TLS 1.3 session tickets: masters connect once per node and keep the connection
    # (Python's asyncio cannot offer a ticket back), and issuing two per handshake cost
    # the node a third of the handshake's CPU (0.85 of 2.5 ms here, OpenSSL 3.0).
    context.num_tickets = 0
    load_server_material(context, cert, key, ca)
    return context


def load_server_material(context: ssl.SSLContext, cert: Path, key: Path, ca: Path) -> None:
    """(Re)load the node's certificate and the CA into ``context``: new connections use
    them, established ones keep what they negotiated.  A CA loaded earlier stays trusted
    until the daemon restarts (OpenSSL can add to a trust store, not remove from it),
    which is what a CA rotation needs.

    All or nothing: the files are read once, that copy is checked whole on a probe
    context (:func:`check_server_material`, ``ValueError``), and only then loaded into
    ``context``; a half-done rotation (a new certificate, the old key) leaves ``context``
    as it was (OpenSSL, loading into it, would keep the new certificate without a key)."""
    with _snapshot(cert) as cert_copy, _snapshot(key) as key_copy, _snapshot(ca) as ca_copy:
        try:
            check_server_material(cert_copy, key_copy, ca_copy)
        except ValueError as exc:  # in the files' own names, not the copies'
            said = str(exc)
            copies = ((cert_copy, cert), (key_copy, key), (ca_copy, ca))
            for copy, path in sorted(copies, key=lambda pair: -len(str(pair[0]))):
                said = said.replace(str(copy), str(path))
            raise ValueError(said) from exc
        context.load_cert_chain(str(cert_copy), str(key_copy))
        context.load_verify_locations(cafile=str(ca_copy))


@contextlib.contextmanager
def _snapshot(path: Path) -> Iterator[Path]:
    """A copy of ``path`` in memory (a memfd, never on disk), as a path OpenSSL can open:
    what is checked is what is loaded, whatever happens to the file meanwhile.  An
    unreadable file raises ``ValueError`` naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from exc
    fd = os.memfd_create("ganeti-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def check_server_material(cert: Path, key: Path, ca: Path) -> None:
    """``ValueError`` naming the flag and the file a daemon cannot serve TLS with (not a
    certificate, not a key, a key that is not the certificate's, no CA certificate), so
    that it refuses them at start in words rather than OpenSSL's ``[SSL] PEM lib``."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_verify_locations(cafile=str(cert))
    except OSError as exc:  # ssl.SSLError too
        raise ValueError(f"--tls-cert {cert}: {_not_pem(exc, 'a PEM certificate')}") from exc
    try:
        probe.load_cert_chain(str(cert), str(key))
    except OSError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ValueError(f"--tls-key {key} is not the key of --tls-cert {cert}") from exc
        raise ValueError(f"--tls-key {key}: {_not_pem(exc, 'a PEM private key')}") from exc
    try:
        probe.load_verify_locations(cafile=str(ca))
    except OSError as exc:
        raise ValueError(f"--tls-ca {ca}: {_not_pem(exc, 'a PEM CA certificate')}") from exc


def _not_pem(exc: OSError, what: str) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not {what}"
    return exc.strerror or str(exc)  # unreadable: permission denied, a directory


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as lowercase hex."""
    return hashlib.sha256(der).hexdigest()


def common_name(der: bytes) -> str | None:
    """The subject common name of a DER certificate, if it has one."""
    return identity(der)[0]


def file_identity(path: Path) -> tuple[str | None, str | None]:
    """:func:`identity` of a PEM certificate file (the first certificate in it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return identity(certificate.public_bytes(Encoding.DER))


def identity(der: bytes) -> tuple[str | None, str | None]:
    """(common name, role) of a DER certificate; the role is its subject's one
    organizational unit (None when it has none or several: a certificate issued before
    roles, or not by ``rpc-cli certs issue``)."""
    from cryptography import x509  # only needed under a policy, an audit log or roles
    from cryptography.x509.oid import NameOID

    subject = x509.load_der_x509_certificate(der).subject
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    units = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    name = str(names[0].value) if names else None
    return name, str(units[0].value) if len(units) == 1 else None
