"""The daemon's configuration: one object, built only by the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MiB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class NodedConfig:
    """Every setting of ganeti-noded, with units in the names."""

    bind: str = "127.0.0.1"
    port: int = 1811
    state_dir: Path = Path("/var/lib/ganeti-noded")
    functions: tuple[str, ...] = ()
    name: str | None = None
    max_functions: int = 256
    max_wait_s: float = 60.0
    result_ttl_s: float = 900.0
    max_retained: int = 10000
    shutdown_grace_s: float = 10.0
    kill_grace_s: float = 5.0
    max_request_bytes: int = 16 * MiB
    max_result_bytes: int = 64 * MiB
    stderr_tail_bytes: int = 64 * 1024
    #: how long a connection may go without a complete request: idle between requests,
    #: or headers and body trickling in
    idle_timeout_s: float = 30.0
    #: "fork": from a pre-loaded fork server (fast); "exec": a fresh interpreter per call
    spawn: Literal["fork", "exec"] = "fork"
    #: with fork, how many children are kept forked ahead of calls
    spare_processes: int = 4
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    #: certificate SHA-256 fingerprints or common names of the masters taken (empty: any
    #: certificate the CA signed)
    tls_allowed_clients: tuple[str, ...] = ()
    log_format: Literal["text", "json"] = "text"
    log_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def __post_init__(self) -> None:
        positive = {
            "max_functions": self.max_functions,
            "max_wait_s": self.max_wait_s,
            "result_ttl_s": self.result_ttl_s,
            "max_retained": self.max_retained,
            "max_request_bytes": self.max_request_bytes,
            "max_result_bytes": self.max_result_bytes,
            "stderr_tail_bytes": self.stderr_tail_bytes,
            "idle_timeout_s": self.idle_timeout_s,
        }
        for field_name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{field_name} must be > 0, got {value}")
        for field_name, value in (
            ("shutdown_grace_s", self.shutdown_grace_s),
            ("kill_grace_s", self.kill_grace_s),
        ):
            if value < 0:
                raise ValueError(f"{field_name} must be >= 0, got {value}")
        tls = (self.tls_cert, self.tls_key, self.tls_ca)
        if any(tls) and not all(tls):
            raise ValueError("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
        if self.tls_allowed_clients and not self.tls:
            raise ValueError("--tls-allowed-clients needs TLS (--tls-cert, --tls-key, --tls-ca)")
        if self.spawn not in ("fork", "exec"):
            raise ValueError(f"spawn must be 'fork' or 'exec', got {self.spawn!r}")
        if self.spare_processes < 0:
            raise ValueError(f"spare_processes must be >= 0, got {self.spare_processes}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json', got {self.log_format!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
