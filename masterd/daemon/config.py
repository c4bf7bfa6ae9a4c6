"""ganeti-masterd's configuration: one frozen object, built only by its command line."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from masterd.store import check_url
from rpc_client import flags

MiB = 1024 * 1024
STORE_FILE = "masterd.sqlite3"


def flag(help: str, *, metavar: str | None = None, name: str | None = None) -> dict[str, Any]:
    """A setting's metadata: its ``--help`` text, metavar, and flag ``name`` where it is
    not the field's (``masterd.daemon.cli`` makes one flag a field, as noded's does)."""
    return {"help": help, "metavar": metavar, "flag": name}


@dataclass(frozen=True, kw_only=True)
class MasterdConfig:
    """Every setting of ganeti-masterd, with units in the names."""

    bind: str = field(
        default="127.0.0.1",
        metadata=flag("address to listen on (default %(default)s)", metavar="ADDR"),
    )
    port: int = field(default=1812, metadata=flag("TCP port (default %(default)s; 0 = any)"))
    advertise: str | None = field(
        default=None,
        metadata=flag("HOST:PORT nodes should use (default: bind and port)", metavar="HOST:PORT"),
    )
    state_dir: Path = field(
        default=Path("/var/lib/ganeti-masterd"),
        metadata=flag("where the default store lives (default %(default)s)", metavar="DIR"),
    )
    store: str | None = field(
        default=None,
        metadata=flag(f"sqlite:////ABS/PATH (default: STATE_DIR/{STORE_FILE}; one masterd), "
                      "or postgresql://USER@HOST:PORT/DB (several)", metavar="URL"),
    )  # fmt: skip
    nodes: Path | None = field(
        default=None,
        metadata=flag("a nodes.toml: its nodes are listed (unknown until they register), "
                      "and their labels added to the nodes'", metavar="FILE"),
    )  # fmt: skip
    commands: tuple[str, ...] = field(
        default=(),
        metadata=flag("modules of master commands (@command), comma-separated importable "
                      "names", metavar="MODS"),
    )  # fmt: skip
    commands_path: tuple[Path, ...] = field(
        default=(),
        metadata=flag("a directory to import the command modules from (repeatable; before "
                      "the daemon's working directory, which is searched last)",
                      metavar="DIR", name="--commands-path"),
    )  # fmt: skip
    command_threads: int = field(
        default=16,
        metadata=flag("plain (not async) master commands running at once; more wait "
                      "(default %(default)s)"),
    )  # fmt: skip
    heartbeat_s: float = field(
        default=30.0,
        metadata=flag("how often nodes heartbeat; alive = heard from within 3 x this "
                      "(default %(default)s s)", metavar="S"),
    )  # fmt: skip
    lease_s: float = field(
        default=15.0,
        metadata=flag("several masters on one store: each renews its row every third of "
                      "this; one silent this long drops out of Register's masters and "
                      "its jobs go to another (default %(default)s s)", metavar="S",
                      name="--lease-s"),
    )  # fmt: skip
    max_wait_s: float = field(
        default=60.0,
        metadata=flag("longest single wait a request may ask for (default %(default)s s)",
                      metavar="S"),
    )  # fmt: skip
    max_request_bytes: int = field(
        default=16 * MiB, metadata=flag("largest request body (default 16 MiB)")
    )
    max_report_events: int = field(
        default=1000, metadata=flag("most events in one Report (default %(default)s)")
    )
    node_events_per_s: float = field(
        default=1000.0,
        metadata=flag("events a node may report per second, sustained, before 503 Busy "
                      "(bursts of --max-report-events; default %(default)s)", metavar="N",
                      name="--node-events-per-s"),
    )  # fmt: skip
    job_ttl_s: float = field(
        default=7 * 24 * 3600.0,
        metadata=flag("how long an ended job and its results are kept (default 7 days)",
                      metavar="S"),
    )  # fmt: skip
    event_ttl_s: float = field(
        default=7 * 24 * 3600.0,
        metadata=flag("how long a stored event is kept; older ones are deleted in the "
                      "background (default 7 days)", metavar="S"),
    )  # fmt: skip
    max_job_result_bytes: int = field(
        default=MiB,
        metadata=flag("a job's node result over this is left on the node: ResultTooLarge "
                      "(default 1 MiB)"),
    )  # fmt: skip
    descriptor_reserve: int = field(
        default=32,
        metadata=flag("file descriptors kept for the store and jobs' connections to "
                      "nodes: a new connection is taken in while a quarter of them remain "
                      "free; short of that, 503 Busy (default %(default)s)", metavar="N"),
    )  # fmt: skip
    handshake_timeout_s: float = field(
        default=10.0,
        metadata=flag("longest a client may take over its TLS handshake "
                      "(default %(default)s s)", metavar="S"),
    )  # fmt: skip
    insecure: bool = field(
        default=False, metadata=flag("allow listening on a non-loopback address without TLS")
    )
    tls_cert: Path | None = field(
        default=None,
        metadata=flag("this masterd's certificate (rpc-cli certs issue ... --masterd); "
                      "with --tls-key and --tls-ca: TLS, client certificates required, "
                      "and nodes called over TLS with it",
                      metavar="FILE"),
    )  # fmt: skip
    tls_key: Path | None = field(default=None, metadata=flag("its key", metavar="FILE"))
    tls_ca: Path | None = field(
        default=None, metadata=flag("the cluster CA that signs clients' certificates",
                                    metavar="FILE"),
    )  # fmt: skip
    log_format: Literal["text", "json"] = field(
        default="text", metadata=flag("log lines as key=value text or JSON")
    )
    log_file: Path | None = field(
        default=None, metadata=flag("log to this file instead of stderr; SIGHUP reopens it")
    )

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.state_dir.resolve() / STORE_FILE}"

    @property
    def advertised(self) -> str:
        """HOST:PORT as nodes should reach this masterd."""
        return self.advertise or f"{self.bind}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def flush_interval_s(self) -> float:
        """How often heartbeats' ``last_seen`` go to the store (ListNodes reads memory)."""
        return min(self.heartbeat_s, 5.0)

    def __post_init__(self) -> None:
        for name in ("heartbeat_s", "lease_s", "max_wait_s", "max_request_bytes",
                     "max_report_events", "node_events_per_s", "command_threads", "job_ttl_s",
                     "event_ttl_s", "max_job_result_bytes", "descriptor_reserve",
                     "handshake_timeout_s"):  # fmt: skip
            flags.check_positive({name: getattr(self, name)})
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json', got {self.log_format!r}")
        if self.advertise is not None and not _host_port(self.advertise):
            raise ValueError(f"--advertise {self.advertise!r}: expected HOST:PORT")
        check_url(self.store_url)
        given = [self.tls_cert, self.tls_key, self.tls_ca]
        if any(given) and not all(given):
            raise ValueError("--tls-cert, --tls-key and --tls-ca go together: give all three")


def _host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
