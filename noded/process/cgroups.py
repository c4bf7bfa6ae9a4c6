"""A cgroup v2 directory per call, under ``<root>/noded-<daemon pid>/call-<pid>``: what
holds a call's whole tree when the daemon may write a cgroup (noded.process.tree).

A cgroup can be removed only once it is empty, and its processes leave it a moment after
``cgroup.kill`` (each must run to its exit): a cgroup killed is removed once
``cgroup.events`` says ``populated 0``, waiting up to :data:`EMPTY_WAIT_S`.  What a
crashed daemon left is removed at the next start: the cgroups of the calls its journal
names (killed first), then every empty call cgroup of a daemon no longer running, and
that daemon's own directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

from noded.process.child import limits as call_limits
from noded.process.process_table import ProcessTable
from rpc_client.logs import event

log = logging.getLogger("noded.process")

#: longest wait for killed cgroups to empty (their processes exit in milliseconds; one
#: in uninterruptible sleep may take longer: its cgroup is left for the next start)
EMPTY_WAIT_S = 2.0
#: the controllers that bound a call's whole tree
_BOUNDING = ("memory", "pids")
_UNIFIED_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
_MiB = 1024 * 1024


class CgroupTree:
    """One call's cgroup; ``on_busy`` takes it if it cannot be removed when released."""

    def __init__(self, path: Path, on_busy: Callable[[CgroupTree], None] | None = None) -> None:
        self.path = path
        self._on_busy = on_busy
        #: the call's limits of those the kernel keeps, by limit name
        self._kept: dict[str, dict[str, Any]] = {}

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            _write(self.path / "cgroup.kill", "1")
            return
        signal_all(self.members(), sig)

    def members(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def processes(self, table: ProcessTable) -> set[int]:
        return set(self.members()) - table.zombies

    def bound(self, limits: dict[str, Any]) -> set[str]:
        """``memory.max`` (with ``memory.oom.group``: the OOM killer takes the whole call)
        and ``pids.max``, where the cgroup has the controller."""
        if "memory_mb" in limits and _write(
            self.path / "memory.max", str(int(limits["memory_mb"] * _MiB))
        ):
            _write(self.path / "memory.oom.group", "1")
            self._kept["memory_mb"] = limits
        if "processes" in limits and _write(self.path / "pids.max", str(int(limits["processes"]))):
            self._kept["processes"] = limits
        return set(self._kept)

    def exceeded(self) -> tuple[str, str] | None:
        if "memory_mb" in self._kept and _events(self.path / "memory.events").get("oom_kill"):
            return "memory", call_limits.what("memory", self._kept["memory_mb"])
        if "processes" in self._kept and _events(self.path / "pids.events").get("max"):
            return "processes", call_limits.what("processes", self._kept["processes"])
        return None

    def release(self) -> None:
        if not self.remove() and self._on_busy is not None:
            self._on_busy(self)  # a process of the call lives on: removed once it ends

    def remove(self) -> bool:
        """Remove the cgroup if it is empty; True once it is gone."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:  # EBUSY: something of the call still runs there
            return False
        return True


def remove_when_empty(trees: Iterable[CgroupTree], timeout_s: float = EMPTY_WAIT_S) -> int:
    """Remove each of ``trees`` as soon as it is empty, waiting up to ``timeout_s`` in
    all (woken by ``cgroup.events``); how many are left, each logged."""
    left = [tree for tree in trees if not tree.remove()]
    deadline = time.monotonic() + timeout_s
    while left and (remaining := deadline - time.monotonic()) > 0:
        _wait_for_events(left, remaining)
        left = [tree for tree in left if not tree.remove()]
    for tree in left:
        event(log, "cgroup.busy", logging.WARNING, path=str(tree.path),
              processes=len(tree.members()), waited_s=timeout_s)  # fmt: skip
    return len(left)


def _wait_for_events(trees: list[CgroupTree], timeout_s: float) -> None:
    """Until one of ``trees``' ``cgroup.events`` changes, or 50 ms (an emptying missed
    between the last look and this wait is seen then), or ``timeout_s``."""
    poller, fds = select.poll(), []
    try:
        for tree in trees:
            with contextlib.suppress(OSError):
                fd = os.open(tree.path / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
                fds.append(fd)
                os.read(fd, 4096)  # a kernfs file wakes its pollers once it has been read
                poller.register(fd, select.POLLPRI | select.POLLERR)
        poller.poll(max(1, int(min(timeout_s, 0.05) * 1000)))
    finally:
        for fd in fds:
            os.close(fd)


def remove_leftovers(root: Path, own: Path) -> None:
    """At start: remove the empty call cgroups that daemons no longer running left under
    ``root`` (and those of a daemon that had this one's pid, in ``own``), and their
    directories once empty.  A busy one (a process a finished call left running) stays."""
    removed = 0
    for daemon in root.glob("noded-*"):
        pid = daemon.name.removeprefix("noded-")
        if daemon != own and (not pid.isdigit() or psutil.pid_exists(int(pid))):
            continue  # another daemon's, running
        for call in daemon.glob("call-*"):
            removed += CgroupTree(call).remove()
        if daemon != own:
            with contextlib.suppress(OSError):
                daemon.rmdir()
    if removed:
        event(log, "cgroup.leftovers_removed", root=str(root), cgroups=removed)


def signal_all(pids: Iterable[int], sig: int) -> None:
    """``sig`` to each of ``pids`` still there (for a cgroup's members and a walked tree)."""
    for pid in pids:
        if pid <= 0:  # 0 and -1 name groups, never one process of a call
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:  # no such controller here, or the cgroup is gone
        return False
    return True


def _events(path: Path) -> dict[str, int]:
    """A cgroup ``*.events`` file: ``{"oom_kill": 1, ...}``; empty if unreadable."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {name: int(count) for name, _, count in (line.partition(" ") for line in lines)}


def enable_controllers(own: Path) -> set[str]:
    """Give the calls' cgroups under ``own`` the memory and pids controllers, where the
    hierarchy has them and its parent may pass them on (cgroup v2 lets a cgroup that
    holds processes pass none: under ``auto`` the daemon's own holds the daemon); the
    names of those they get."""
    for directory in (own.parent, own):
        for controller in _BOUNDING:
            _write(directory / "cgroup.subtree_control", f"+{controller}")
    try:
        enabled = set((own / "cgroup.subtree_control").read_text().split())
    except OSError:
        return set()
    return enabled & set(_BOUNDING)


def cgroup_root(setting: str) -> tuple[Path | None, str]:
    """The directory ``--cgroup-root`` names (a directory, ``auto`` or ``none``), or
    None and why not."""
    if setting == "none":
        return None, "--cgroup-root none"
    if setting != "auto":
        path = Path(setting)
        if not (path / "cgroup.procs").exists():
            return None, f"{path} is not a cgroup v2 directory"
        return path, ""
    if "INVOCATION_ID" not in os.environ:
        return None, "not under systemd (give --cgroup-root to use a cgroup)"
    own = _own_cgroup()
    if own is None or not os.access(own, os.W_OK):
        return None, "the daemon's cgroup is not delegated (Delegate=yes in the unit)"
    return own, ""


def _own_cgroup() -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    if relative is None:
        return None
    for mount in _UNIFIED_MOUNTS:
        candidate = mount / relative.lstrip("/")
        if (candidate / "cgroup.procs").exists() and (mount / "cgroup.controllers").exists():
            return candidate
    return None


def make_own(path: Path) -> Path:
    path.mkdir(mode=0o755, exist_ok=True)  # left by a daemon of the same pid: reusable
    return path
