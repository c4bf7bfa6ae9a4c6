"""A call's resource limits, applied in its process before the function runs.

``memory_mb`` (RLIMIT_AS: the address space of each process), ``cpu_s`` (RLIMIT_CPU:
SIGXCPU at the limit, SIGKILL a second later) and ``open_files`` (RLIMIT_NOFILE).  A
function stopped by one fails with ``ResourceLimitExceeded`` and ``limit`` saying which:
the runner recognises a ``MemoryError`` and an ``EMFILE`` under a limit, the daemon a
death by SIGXCPU.

``memory_mb`` and ``processes`` also bound the call's whole tree, which no rlimit does
(RLIMIT_AS is per process, RLIMIT_NPROC per user): the daemon keeps them
(noded.process.bounds), with a cgroup's ``memory.max`` and ``pids.max`` where it can.
"""

from __future__ import annotations

import errno
import resource
from typing import Any

from rpc_client import protocol

_MiB = 1024 * 1024


def apply(limits: dict[str, Any]) -> None:
    """Lower this process's limits to ``limits`` (never raise one above its hard limit)."""
    if "memory_mb" in limits:
        _lower(resource.RLIMIT_AS, int(limits["memory_mb"] * _MiB))
    if "cpu_s" in limits:
        seconds = max(1, int(-(-limits["cpu_s"] // 1)))  # whole seconds, rounded up
        _lower(resource.RLIMIT_CPU, seconds, hard=seconds + 1)
        _lower(resource.RLIMIT_CORE, 0)  # SIGXCPU would dump a core
    if "open_files" in limits:
        _lower(resource.RLIMIT_NOFILE, int(limits["open_files"]))


def _lower(which: int, soft: int, *, hard: int | None = None) -> None:
    _, old_hard = resource.getrlimit(which)
    ceiling = old_hard if old_hard != resource.RLIM_INFINITY else None

    def capped(value: int) -> int:
        return value if ceiling is None else min(value, ceiling)

    resource.setrlimit(which, (capped(soft), capped(hard if hard is not None else soft)))


def exceeded(exc: BaseException, limits: dict[str, Any]) -> dict[str, Any] | None:
    """The failure of a function whose exception a limit caused, or None."""
    if isinstance(exc, MemoryError) and "memory_mb" in limits:
        return failure("memory", what("memory", limits))
    if isinstance(exc, OSError) and exc.errno == errno.EMFILE and "open_files" in limits:
        return failure("open_files", what("open_files", limits))
    return None


def what(limit: str, limits: dict[str, Any]) -> str:
    """How a failure names ``limit`` ("memory", "open_files", "processes") of ``limits``."""
    if limit == "memory":
        return f"the call's memory limit of {limits['memory_mb']} MiB"
    if limit == "open_files":
        return f"the call's limit of {limits['open_files']} open files"
    return f"the call's limit of {limits['processes']} processes"


def failure(limit: str, what: str) -> dict[str, Any]:
    return {
        "type": protocol.RESOURCE_LIMIT_EXCEEDED,
        "message": f"stopped by {what}",
        "traceback": None,
        "limit": limit,
    }
