"""A cluster CA and certificates for tests, made by the project's own tooling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rpc_client import certs
from rpc_client.tls import TLSConfig


def tls_args(made: certs.Issued, ca_dir: Path) -> list[str]:
    """The daemon's flags for a node certificate and the CA in ``ca_dir``."""
    return [
        "--tls-cert",
        str(made.cert),
        "--tls-key",
        str(made.key),
        "--tls-ca",
        str(ca_dir / "ca.crt"),
    ]


@dataclass
class Pki:
    ca: Path
    other_ca: Path

    def master(self, name: str = "master", **kwargs: object) -> TLSConfig:
        kwargs.setdefault("force", True)  # tests issue the same names again
        made = certs.issue(self.ca, name, "master", **kwargs)  # type: ignore[arg-type]
        return TLSConfig(cert=made.cert, key=made.key, ca=self.ca / "ca.crt")

    def tls(self, name: str) -> TLSConfig:
        """The TLS settings of the master certificate ``name`` issued before."""
        return TLSConfig(cert=self.ca / f"{name}.crt", key=self.ca / f"{name}.key",
                         ca=self.ca / "ca.crt")  # fmt: skip

    def node_args(self, name: str = "node1") -> list[str]:
        made = certs.issue(self.ca, name, "node", addresses=("127.0.0.1",), force=True)
        return tls_args(made, self.ca)


def make_pki(directory: Path) -> Pki:
    """A cluster CA, and another that signs nothing the nodes take."""
    certs.init_ca(directory / "ca")
    certs.init_ca(directory / "other", name="someone else's CA")
    return Pki(directory / "ca", directory / "other")
