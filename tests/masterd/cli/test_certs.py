"""rpc-cli certs: a typo never destroys a key or a certificate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

CERTS = [sys.executable, "-m", "masterd.cli", "certs"]


def certs(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CERTS, *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    assert certs("init", tmp_path / "pki").returncode == 0
    return tmp_path / "pki"


def test_issuing_over_the_ca_is_refused_and_the_ca_key_survives(ca: Path) -> None:
    key = (ca / "ca.key").read_bytes()
    done = certs("issue", ca, "ca", "--node")
    assert done.returncode == 2 and "'ca' is the cluster CA's" in done.stderr
    assert "Traceback" not in done.stderr
    assert (ca / "ca.key").read_bytes() == key
    assert certs("issue", ca, "node1", "--node").returncode == 0  # the CA still signs


@pytest.mark.parametrize("name", ["../escape", "a/b", "node..1", "node-", "", "x" * 300])
def test_names_that_are_not_plain_host_names_are_refused(ca: Path, name: str) -> None:
    done = certs("issue", ca, name, "--master")
    assert done.returncode == 2 and "host name" in done.stderr
    assert sorted(path.name for path in ca.iterdir()) == ["ca.crt", "ca.key"]


@pytest.mark.parametrize("days", ["0", "-5"])
def test_days_below_one_are_refused(ca: Path, days: str) -> None:
    done = certs("issue", ca, "node1", "--node", "--days", days)
    assert done.returncode == 2 and "--days must be at least 1" in done.stderr


def test_an_existing_pair_is_replaced_only_with_force_and_kept(ca: Path) -> None:
    assert certs("issue", ca, "node1", "--node").returncode == 0
    first = (ca / "node1.crt").read_bytes(), (ca / "node1.key").read_bytes()
    again = certs("issue", ca, "node1", "--node", "--days", "1")
    assert again.returncode == 2 and "--force" in again.stderr
    assert ((ca / "node1.crt").read_bytes(), (ca / "node1.key").read_bytes()) == first
    forced = certs("issue", ca, "node1", "--node", "--days", "1", "--force")
    assert forced.returncode == 0
    assert ((ca / "node1.crt.old").read_bytes(), (ca / "node1.key.old").read_bytes()) == first
    cert = x509.load_pem_x509_certificate((ca / "node1.crt").read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 1
