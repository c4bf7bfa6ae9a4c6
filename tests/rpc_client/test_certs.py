"""The roles ``rpc-cli certs issue`` writes: subject OU, extended key usages, names."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rpc_client import certs, tls

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.mark.parametrize(
    ("role", "unit", "expected", "named"),
    [
        ("node", "node", {SERVER, CLIENT}, True),
        ("master", "operator", {CLIENT}, False),
        ("masterd", "masterd", {SERVER, CLIENT}, True),
    ],
)
def test_each_role_is_written_in_the_certificate(
    tmp_path: Path, role: certs.Role, unit: str, expected: set[object], named: bool
) -> None:
    certs.init_ca(tmp_path)
    made = certs.issue(tmp_path, "m1", role, addresses=("127.0.0.1",))
    cert = load(made.cert)
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [u.value for u in units] == [unit]
    assert usages(cert) == expected
    der = cert.public_bytes(serialization.Encoding.DER)
    assert tls.identity(der) == ("m1", unit) and tls.common_name(der) == "m1"
    if named:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert alt.get_values_for_type(x509.DNSName) == ["m1"]
        assert alt.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    with pytest.raises(ValueError, match="role must be one of"):
        certs.issue(tmp_path, "x", "admin")  # type: ignore[arg-type]


def test_rpc_cli_issues_masterds_certificate(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "masterd.cli", "certs"]
    subprocess.run([*run, "init", str(tmp_path)], check=True, capture_output=True, timeout=60)
    done = subprocess.run(
        [*run, "issue", str(tmp_path), "master1", "--masterd", "--address", "10.0.0.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cert = load(tmp_path / "master1.crt")
    der = cert.public_bytes(serialization.Encoding.DER)
    assert tls.identity(der) == ("master1", "masterd") and usages(cert) == {SERVER, CLIENT}
