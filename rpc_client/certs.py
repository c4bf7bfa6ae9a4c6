"""A cluster CA and the certificates it issues (``rpc-cli certs init|issue``).

Layout of a certificates directory (mode 0700)::

    ca.crt  ca.key              the cluster CA (keep ca.key off the nodes)
    NAME.crt  NAME.key          one per node, operator (master) or ganeti-masterd

Keys are EC P-256 and written with mode 0600; certificates 0644.  Each certificate's
subject carries its name (common name) and its role (organizational unit: ``node``,
``operator`` or ``masterd``; ganeti-masterd decides by it what a client may call).  A
node's certificate is valid for server and client authentication (it serves its own
calls and calls ganeti-masterd), an operator's for client authentication, a masterd's
for both.  Node and masterd certificates carry their name (and any addresses given) as
subjectAltName, so that a client can check that it reaches the server it meant.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rpc_client.tls import MASTERD_ROLE, NODE_ROLE, OPERATOR_ROLE

Role = Literal["node", "master", "masterd"]

#: each role's organizational unit in the subject, and its extended key usages
_UNITS = {"node": NODE_ROLE, "master": OPERATOR_ROLE, "masterd": MASTERD_ROLE}
_SERVER, _CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
_USAGES = {"node": [_SERVER, _CLIENT], "master": [_CLIENT], "masterd": [_SERVER, _CLIENT]}

CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class Issued:
    """Where an issued certificate and its key were written."""

    cert: Path
    key: Path


def init_ca(directory: Path, *, name: str = "noded cluster CA", days: int = CA_DAYS) -> Issued:
    """Create a CA in ``directory``; refuses to overwrite an existing one.

    Its common name is ``name`` and a random suffix (``noded cluster CA 5f0c2a9e41d3b7a6``),
    unique to this CA: a verifier looks up a certificate's issuer by that name, so two
    clusters' CAs of one name would make another cluster's certificate a "bad
    certificate" (the signature fails against our CA) instead of an "unknown CA"."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() or key_path.exists():
        raise ValueError(f"{directory} already holds a CA; remove ca.crt and ca.key first")
    key = ec.generate_private_key(ec.SECP256R1())
    unique = f"{name} {secrets.token_hex(8)}"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, unique)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return Issued(cert_path, key_path)


def issue(
    directory: Path,
    name: str,
    role: Role,
    *,
    addresses: tuple[str, ...] = (),
    days: int = CERT_DAYS,
    not_before: datetime.datetime | None = None,
    force: bool = False,
) -> Issued:
    """Issue ``NAME.crt``/``NAME.key`` signed by the CA in ``directory``.

    Refuses (``ValueError``) a name that is not a plain host name or is ``ca``, ``days``
    below 1, and a NAME whose certificate or key exists, unless ``force``: the old pair is
    then kept as ``NAME.crt.old``/``NAME.key.old``.
    """
    _check_name(name)
    if role not in _UNITS:
        raise ValueError(f"role must be one of {', '.join(_UNITS)}, got {role!r}")
    if days < 1:
        raise ValueError(f"--days must be at least 1, got {days}")
    issued = Issued(directory / f"{name}.crt", directory / f"{name}.key")
    _make_room(issued, force)
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - datetime.timedelta(minutes=5)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _UNITS[role]),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_USAGES[role]), critical=False)
    )  # fmt: skip
    if role != "master":
        builder = builder.add_extension(_alt_names(name, addresses), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(issued.key, key)
    _write_cert(issued.cert, cert)
    return issued


#: a host name: dot-separated labels of letters, digits, hyphens (and underscores)
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*")


def _check_name(name: str) -> None:
    if name.lower() == "ca":
        raise ValueError("the name 'ca' is the cluster CA's: give the node or master its own")
    if len(name) > 253 or not _HOST_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a plain host name (letters, digits, '-', '_' and dots; no '/' "
            "and no '..'): it names the files NAME.crt and NAME.key"
        )


def _make_room(issued: Issued, force: bool) -> None:
    existing = [path for path in (issued.cert, issued.key) if path.exists()]
    if not existing:
        return
    if not force:
        raise ValueError(
            f"{existing[0]} already exists; give --force to replace it (the old pair is "
            "then kept as NAME.crt.old and NAME.key.old)"
        )
    for path in existing:
        os.replace(path, path.with_name(path.name + ".old"))


def _alt_names(name: str, addresses: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = [x509.DNSName(name)]
    for address in addresses:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            entries.append(x509.DNSName(address))
    return x509.SubjectAlternativeName(entries)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    except FileNotFoundError as exc:
        raise ValueError(f"no CA in {directory}: run 'rpc-cli certs init {directory}'") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory}/ca.key is not an EC key made by 'rpc-cli certs init'")
    return cert, key


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(path, 0o644)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
