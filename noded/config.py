"""The daemon's configuration: one object, built only by the command line."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rpc_client import flags

MiB = 1024 * 1024
#: two segments of the output log (noded.calls.output_log) of the smallest size
MIN_OUTPUT_BYTES = 8 * 1024
#: the most output kept per call: a call's output is for an operator to read, not a file
#: store (a follower's read is bounded by the answer, whatever this is)
MAX_OUTPUT_BYTES = 64 * MiB


def flag(help: str, *, metavar: str | None = None, name: str | None = None) -> dict[str, Any]:
    """A setting's metadata: its ``--help`` text (``%(default)s`` is the default), metavar,
    and flag ``name`` where it is not the field's.  ``noded.cli`` makes one flag a field."""
    return {"help": help, "metavar": metavar, "flag": name}


@dataclass(frozen=True, kw_only=True)
class NodedConfig:
    """Every setting of ganeti-noded, with units in the names."""

    bind: str = field(
        default="127.0.0.1",
        metadata=flag("address to listen on (default %(default)s)", metavar="ADDR"),
    )
    port: int = field(default=1811, metadata=flag("TCP port (default %(default)s; 0 = any)"))
    state_dir: Path = field(
        default=Path("/var/lib/ganeti-noded"),
        metadata=flag(
            "where the node uuid and calls are kept (default %(default)s)", metavar="DIR"
        ),
    )
    functions: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "comma-separated importable modules with @function definitions (default: "
            "none, only the built-ins echo, node_info and sleep)",
            metavar="MODS",
        ),
    )
    functions_path: tuple[Path, ...] = field(
        default=(),
        metadata=flag(
            "a directory to import the function modules from (repeatable; before the "
            "daemon's working directory, which is searched last)",
            metavar="DIR",
            name="--functions-path",
        ),
    )
    name: str | None = field(
        default=None,
        metadata=flag(
            "name in Identify and Register (default: the node certificate's, or the host name)",
            metavar="NAME",
        ),
    )
    max_functions: int = field(
        default=256,
        metadata=flag("concurrent function processes before 503 Busy (default %(default)s)"),
    )
    max_wait_s: float = field(
        default=60.0,
        metadata=flag(
            "longest single wait a request may ask for (default %(default)s s)", metavar="S"
        ),
    )
    result_ttl_s: float = field(
        default=900.0,
        metadata=flag("how long finished calls are kept (default %(default)s s)", metavar="S"),
    )
    max_retained: int = field(
        default=10000,
        metadata=flag("most finished calls kept, oldest dropped first (default %(default)s)"),
    )
    max_retained_bytes: int | None = field(
        default=None,
        metadata=flag(
            "most bytes of finished calls' results kept (their journal records), oldest "
            "dropped first; the newest is always kept (default 256 MiB or an eighth of "
            "the state directory's file system, whichever is less)"
        ),
    )
    shutdown_grace_s: float = field(
        default=10.0,
        metadata=flag(
            "on SIGTERM, wait this long before SIGKILL (default %(default)s s)", metavar="S"
        ),
    )
    kill_grace_s: float = field(
        default=5.0,
        metadata=flag(
            "on abort, wait this long before SIGKILL (default %(default)s s)", metavar="S"
        ),
    )
    max_request_bytes: int = field(
        default=16 * MiB, metadata=flag("largest request body (default 16 MiB)")
    )
    max_result_bytes: int = field(
        default=64 * MiB, metadata=flag("largest result frame (default 64 MiB)")
    )
    journal_slack_lines: int = field(
        default=5000,
        metadata=flag(
            "rewrite the journal once it has this many lines more than live calls "
            "(default %(default)s)"
        ),
    )
    max_output_bytes: int = field(
        default=MiB,
        metadata=flag(
            "a call's output kept on disk, the newest; older output is dropped "
            "(default 1 MiB, at least 8 KiB, at most 64 MiB)"
        ),
    )
    max_retained_output_bytes: int | None = field(
        default=None,
        metadata=flag(
            "the output of every call kept on disk together; past it the oldest finished "
            "calls' output is dropped (default 256 MiB or a quarter of the state "
            "directory's file system, whichever is less; at least --max-output-bytes)"
        ),
    )
    stderr_tail_bytes: int = field(
        default=64 * 1024,
        metadata=flag("how much of a function's stderr is kept (default %(default)s)"),
    )
    #: how long a connection may go without a complete request: idle between requests,
    #: or headers and body trickling in
    idle_timeout_s: float = field(
        default=30.0,
        metadata=flag(
            "close a connection that has no complete request for this long "
            "(idle, or a slow client; default %(default)s s)",
            metavar="S",
        ),
    )
    #: file descriptors a call must leave free when it starts (a new connection: a quarter
    #: of them); past that, 503 Busy with Retry-After (rpc_client.serving.descriptors)
    descriptor_reserve: int = field(
        default=32,
        metadata=flag(
            "file descriptors a new call must leave free, a new connection a quarter of "
            "them; short of that, 503 Busy (default %(default)s)",
            metavar="N",
        ),
    )
    #: "fork": from a pre-loaded fork server (fast); "exec": a fresh interpreter per call
    spawn: Literal["fork", "exec"] = field(
        default="fork",
        metadata=flag(
            "fork function processes from a pre-loaded fork server (default), or exec a "
            "fresh interpreter per call"
        ),
    )
    #: with fork, how many children are kept forked ahead of calls
    spare_processes: int = field(
        default=4,
        metadata=flag(
            "with --spawn fork, children kept forked ahead of calls (default %(default)s)",
            metavar="N",
        ),
    )
    #: a reload imports the function modules in a child process, a fork server too
    import_timeout_s: float = field(
        default=30.0,
        metadata=flag(
            "how long the function modules may take to import in a reload's importing "
            "process and in a new fork server; past it the reload fails and the functions "
            "loaded before keep serving (default %(default)s s)",
            metavar="S",
        ),
    )
    limit_memory_mb: int | None = field(
        default=None,
        metadata=flag("default memory limit of a call (address space, MiB; default none)"),
    )
    limit_cpu_s: float | None = field(
        default=None,
        metadata=flag("default CPU time limit of a call (default none)", metavar="S",
                      name="--limit-cpu-s"),
    )  # fmt: skip
    limit_open_files: int | None = field(
        default=None, metadata=flag("default open files limit of a call (default none)")
    )
    limit_processes: int | None = field(
        default=1024,
        metadata=flag(
            "default limit of a call's processes at once, its own included (default %(default)s)"
        ),
    )
    limit_check_interval_s: float = field(
        default=0.5,
        metadata=flag(
            "how often a call's total memory and processes are checked where no cgroup "
            "controller bounds them (default %(default)s s)",
            metavar="S",
        ),
    )
    cgroup_root: str = field(
        default="auto",
        metadata=flag(
            "a cgroup v2 directory to make a cgroup per call in, so that abort and shutdown "
            "take the whole process tree; 'auto': the daemon's own cgroup under systemd "
            "with Delegate=yes; 'none': walk the process tree instead (default %(default)s)",
            metavar="DIR|auto|none",
        ),
    )
    insecure: bool = field(
        default=False, metadata=flag("allow listening on a non-loopback address without TLS")
    )
    tls_cert: Path | None = field(
        default=None, metadata=flag("this node's certificate", metavar="FILE")
    )
    tls_key: Path | None = field(default=None, metadata=flag("its private key", metavar="FILE"))
    tls_ca: Path | None = field(
        default=None,
        metadata=flag(
            "the CA that signs the masters' certificates (a client certificate is required)",
            metavar="FILE",
        ),
    )
    #: certificate SHA-256 fingerprints or common names of the masters taken (empty: any
    #: certificate the CA signed)
    tls_allowed_clients: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "comma-separated SHA-256 fingerprints or common names of the masters taken",
            metavar="LIST",
        ),
    )
    policy: Path | None = field(
        default=None,
        metadata=flag(
            "who may run what: a TOML file of [[allow]] rules; everything else is 403 "
            "Forbidden (doc/security.md); SIGHUP reloads it",
            metavar="FILE",
        ),
    )
    audit_log: Path | None = field(
        default=None,
        metadata=flag(
            "append a hash-chained record of every start, deny, abort and end to this "
            "file, on disk before a call runs; SIGHUP reopens it",
            metavar="FILE",
        ),
    )
    audit_args: bool = field(
        default=False,
        metadata=flag("write the calls' arguments in the audit log, not only their SHA-256"),
    )
    #: the ganeti-masterd processes this node registers with and reports its events to
    #: (noded.master); empty: no master, the node serves its calls alone
    masters: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "comma-separated ganeti-masterd addresses to register with and report events "
            "to (port 1812 if left out; TOML: masters = [...]); none: no master",
            metavar="HOST[:PORT][,...]",
            name="--master",
        ),
    )
    labels: tuple[str, ...] = field(
        default=(),
        metadata=flag("comma-separated labels sent with Register", metavar="a,b,..."),
    )
    spool_max_events: int = field(
        default=10000,
        metadata=flag(
            "events kept for the master until it acknowledges them, the oldest dropped "
            "first (default %(default)s)",
            metavar="N",
        ),
    )
    spool_max_bytes: int | None = field(
        default=None,
        metadata=flag(
            "bytes of events kept for the master, the oldest dropped first (default 64 MiB, "
            "or an eighth of the state directory's file system if less; at least 1 MiB)",
            metavar="N",
        ),
    )
    log_format: Literal["text", "json"] = field(
        default="text", metadata=flag("log lines as key=value text or JSON")
    )
    log_file: Path | None = field(
        default=None,
        metadata=flag("log to this file instead of stderr; SIGHUP reopens it (for logrotate)"),
    )

    @property
    def default_limits(self) -> dict[str, float]:
        """The resource limits of a call whose function sets none of its own."""
        limits = {
            "memory_mb": self.limit_memory_mb,
            "cpu_s": self.limit_cpu_s,
            "open_files": self.limit_open_files,
            "processes": self.limit_processes,
        }
        return {name: value for name, value in limits.items() if value is not None}

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def __post_init__(self) -> None:
        positive = {
            "max_functions": self.max_functions,
            "max_wait_s": self.max_wait_s,
            "result_ttl_s": self.result_ttl_s,
            "max_retained": self.max_retained,
            "max_retained_bytes": self.max_retained_bytes,
            "max_request_bytes": self.max_request_bytes,
            "max_result_bytes": self.max_result_bytes,
            "stderr_tail_bytes": self.stderr_tail_bytes,
            "journal_slack_lines": self.journal_slack_lines,
            "idle_timeout_s": self.idle_timeout_s,
            "descriptor_reserve": self.descriptor_reserve,
            "import_timeout_s": self.import_timeout_s,
            "limit_check_interval_s": self.limit_check_interval_s,
            "spool_max_events": self.spool_max_events,
        }
        flags.check_positive(positive)
        flags.check_positive(
            {"shutdown_grace_s": self.shutdown_grace_s, "kill_grace_s": self.kill_grace_s},
            or_zero=True,
        )
        tls = (self.tls_cert, self.tls_key, self.tls_ca)
        if any(tls) and not all(tls):
            raise ValueError("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
        if self.tls_allowed_clients and self.policy is not None:
            raise ValueError(
                "give --policy or --tls-allowed-clients, not both: --tls-allowed-clients is "
                "a policy of one rule (doc/security.md); write its clients into the policy"
            )
        if self.tls_allowed_clients and not self.tls:
            raise ValueError("--tls-allowed-clients needs TLS (--tls-cert, --tls-key, --tls-ca)")
        if self.audit_args and self.audit_log is None:
            raise ValueError("--audit-args needs --audit-log FILE")
        if self.spawn not in ("fork", "exec"):
            raise ValueError(f"spawn must be 'fork' or 'exec', got {self.spawn!r}")
        flags.check_positive({f"the {name} limit": v for name, v in self.default_limits.items()})
        self._check_output_bounds()
        if self.spare_processes < 0:
            raise ValueError(f"spare_processes must be >= 0, got {self.spare_processes}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json', got {self.log_format!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        for master in self.masters:
            check_master_address(master)
        if self.spool_max_bytes is not None and self.spool_max_bytes < MiB:
            raise ValueError(f"spool_max_bytes must be at least 1 MiB, got {self.spool_max_bytes}")

    def _check_output_bounds(self) -> None:
        """The output limits: each between its bounds, all calls' at least one call's."""
        if self.max_output_bytes < MIN_OUTPUT_BYTES:
            raise ValueError(
                f"max_output_bytes must be at least {MIN_OUTPUT_BYTES}, got {self.max_output_bytes}"
            )
        if (
            self.max_retained_output_bytes is not None
            and self.max_retained_output_bytes < self.max_output_bytes
        ):
            raise ValueError(
                "max_retained_output_bytes must be at least max_output_bytes "
                f"({self.max_output_bytes}), got {self.max_retained_output_bytes}"
            )
        if self.max_output_bytes > MAX_OUTPUT_BYTES:
            raise ValueError(
                f"max_output_bytes must be at most {MAX_OUTPUT_BYTES} (64 MiB), "
                f"got {self.max_output_bytes}"
            )


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_master_address(address: str) -> None:
    """Raises ``ValueError`` unless ``address`` is ``HOST:PORT`` (``[V6]:PORT`` too)."""
    if "://" in address or "/" in address:
        raise ValueError(f"--master {address!r}: give HOST:PORT, not a URL (the node talks "
                         "TLS to its masters when it serves TLS, with --tls-*)")  # fmt: skip
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"--master {address!r}: expected HOST:PORT (port 1812 if left out)")
