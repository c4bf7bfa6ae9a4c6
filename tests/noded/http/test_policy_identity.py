"""Who a certificate is, against a real mTLS daemon: a fingerprint names the certificate
with that fingerprint, never one whose common name is that text, and a common name that
reads like a fingerprint (or ``local``) gives its holder no other client's rules or calls."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from masterd.local import LocalNode
from noded.http.guard import certificate_identity
from rpc_client import certs, tls
from rpc_client.client import NodeClient
from rpc_client.errors import Forbidden
from rpc_client.tls import TLSConfig
from tests.helpers import node_args, node_env
from tests.pki import make_pki


def issue_raw(ca_dir: Path, filename: str, common_name: str | None) -> TLSConfig:
    """A client certificate signed by the CA in ``ca_dir`` with any common name, or none
    (``rpc-cli certs issue`` takes host names only)."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    # _validate=False: "sha256:" and 64 hex digits is over X.509's 64-character bound for a
    # common name, which OpenSSL does not enforce, so a CA may well sign one
    subject = (
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False)]
        if common_name
        else []
    )
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = ca_dir / f"{filename}.crt", ca_dir / f"{filename}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, plain))
    return TLSConfig(cert=cert_path, key=key_path, ca=ca_dir / "ca.crt")


def fingerprint_of(config: TLSConfig) -> str:
    der = x509.load_pem_x509_certificate(config.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return tls.fingerprint(der)


@dataclass
class Impersonation:
    node: LocalNode
    victim: TLSConfig
    impostor: TLSConfig

    def client(self, tls_config: TLSConfig) -> NodeClient:
        return self.node.client(name="node1", tls=tls_config)


@pytest.fixture
async def impersonation(tmp_path: Path) -> AsyncIterator[Impersonation]:
    pki = make_pki(tmp_path / "pki")
    victim = issue_raw(pki.ca, "victim", None)  # known by its fingerprint only
    impostor = issue_raw(pki.ca, "impostor", f"sha256:{fingerprint_of(victim)}")
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[[allow]]\nclients = ["sha256:{fingerprint_of(victim)}"]\nprocedures = ["*"]\n'
        '[[allow]]\nclients = ["*"]\nfunctions = ["sleep_then"]\n'
        'procedures = ["StartFunction", "WaitForFunction", "AbortFunction", "ListFunctions", '
        '"Identify"]\n'
    )
    args = node_args([*pki.node_args(), "--policy", str(policy)])
    async with LocalNode.running(
        args, env=node_env(), workdir=tmp_path / "node", client_tls=pki.master("master")
    ) as node:
        yield Impersonation(node, victim, impostor)


async def test_a_fingerprint_rule_is_not_met_by_a_common_name_that_reads_like_it(
    impersonation: Impersonation,
) -> None:
    async with impersonation.client(impersonation.victim) as victim:
        assert (await victim.start_function("echo", {"value": 1}, timeout=10)).result == 1
    async with impersonation.client(impersonation.impostor) as impostor:
        with pytest.raises(Forbidden, match="may not run 'echo'"):
            await impostor.start_function("echo", {"value": 1}, timeout=10)
        assert (await impostor.start_function("sleep_then", {"seconds": 0}, timeout=10)).finished


async def test_a_common_name_that_reads_like_a_fingerprint_owns_no_other_call(
    impersonation: Impersonation,
) -> None:
    async with (
        impersonation.client(impersonation.victim) as victim,
        impersonation.client(impersonation.impostor) as impostor,
    ):
        theirs = await victim.start_function(
            "sleep_then", {"seconds": 30}, timeout=0, request_id="key-1"
        )
        with pytest.raises(Forbidden, match=f"may not see call {theirs.fnc_id}"):
            await impostor.wait_for_function(theirs.fnc_id, timeout=0)
        with pytest.raises(Forbidden):
            await impostor.abort_function(theirs.fnc_id)
        assert theirs.fnc_id not in {c["fnc_id"] for c in await impostor.list_functions()}
        # the same request_id is the impostor's own key: its own call, not the victim's
        mine = await impostor.start_function(
            "sleep_then", {"seconds": 30}, timeout=0, request_id="key-1"
        )
        assert mine.fnc_id != theirs.fnc_id
        await impostor.abort_function(mine.fnc_id)
        await victim.abort_function(theirs.fnc_id)


@pytest.mark.parametrize("common_name", ["local", "anonymous", "*", "SHA256:abc", None])
def test_a_certificate_is_its_fingerprint_when_its_common_name_cannot_be_a_name(
    tmp_path: Path, common_name: str | None
) -> None:
    certs.init_ca(tmp_path)
    made = issue_raw(tmp_path, "odd", common_name)
    der = x509.load_pem_x509_certificate(made.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    fingerprint = tls.fingerprint(der)
    certificate_identity.cache_clear()
    assert certificate_identity(der) == (f"sha256:{fingerprint}", fingerprint)
