"""A call's whole process tree: what abort, ``abort_after``, shutdown and crash recovery
must reach, including grandchildren that left the call's process group or session
(``setsid``, ``setpgid``: what any shell with job control does).

* With a cgroup v2 directory the daemon may write (``--cgroup-root DIR``; ``auto`` takes
  the daemon's own cgroup under systemd with ``Delegate=yes``), each call's process is
  moved into a cgroup of its own before it gets its call: everything it starts stays
  there, and ``cgroup.kill`` takes the whole tree at once.
* Without one, the process tree is walked: the leader's descendants (the leader is a
  child subreaper, so orphans stay in its tree while it runs), every process that shows
  the call's mark in ``/proc/PID/environ`` (``NODED_CALL``, the leader's pid and start
  time, written in place before the function runs: forked children show it as exec'd
  ones do; see :mod:`noded.process.child.containment`), and every process seen in the
  call by an earlier walk that still runs, with its descendants.  A SIGKILL stops them
  all first (SIGSTOP, walking again until nothing new is found), then kills them: none
  starts another in between.  Not caught then: a process that left the leader's tree
  after the leader died, was never seen by a walk, and cleared or overwrote its
  environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from noded.process.child import limits as call_limits
from noded.process.child.frames import CALL_MARK, mark_of
from noded.process.leftovers import process_birth
from rpc_client.logs import event

log = logging.getLogger("noded.process")

#: most walks of a call's tree while freezing it (each stops what the last one missed)
_FREEZE_ROUNDS = 8

_UNIFIED_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
#: the controllers that bound a call's whole tree
_BOUNDING = ("memory", "pids")
_MiB = 1024 * 1024


class Tree(Protocol):
    """The processes of one call."""

    def signal(self, sig: int) -> None: ...

    def release(self) -> None: ...

    def bound(self, limits: dict[str, Any]) -> set[str]:
        """Have the kernel keep what it can of the call's ``limits`` over the whole tree;
        the names of those it keeps (``"memory_mb"``, ``"processes"``)."""
        ...

    def exceeded(self) -> tuple[str, str] | None:
        """``(limit, what)`` if the kernel stopped the call at one it keeps."""
        ...

    def processes(self, table: ProcessTable) -> set[int]:
        """The call's living processes now (``table``: :func:`process_table`)."""
        ...


@dataclass
class ProcessTable:
    """The children of every process, and which processes are zombies: one pass over
    /proc (made only where a tree must be walked)."""

    children: dict[int, list[int]] = field(default_factory=dict)
    zombies: set[int] = field(default_factory=set)


def process_table() -> ProcessTable:
    table = ProcessTable()
    for proc in psutil.process_iter(["ppid", "status"]):
        ppid, status = proc.info["ppid"], proc.info["status"]
        if ppid is not None:
            table.children.setdefault(ppid, []).append(proc.pid)
        if status == psutil.STATUS_ZOMBIE:
            table.zombies.add(proc.pid)
    return table


class CallTrees:
    """Makes one :class:`Tree` per call; ``confine(pid)`` before the process gets its
    call.  The fallback when no cgroup can be had."""

    mode = "process-tree"

    def confine(self, pid: int, birth: str | None) -> Tree:
        return MarkedTree(pid, birth)

    def kill_leftovers(self, leftovers: list[tuple[int, str | None, str | None]]) -> set[int]:
        """SIGKILL what calls of a crashed daemon left: ``(pid, birth, cgroup)`` each;
        the pids of those that had something left."""
        marks = {mark_of(pid, birth): pid for pid, birth, _ in leftovers if birth}
        leaders = {pid for pid, birth, _ in leftovers if birth and process_birth(pid) == birth}
        found = set(leaders)

        def members() -> set[int]:
            children, marked = _scan(set(marks))
            found.update(marks[mark] for mark in marked.values())
            return _descendants_of(leaders, children) | leaders | set(marked)

        freeze_and_kill(members)
        for pid, _, cgroup in leftovers:
            if cgroup is not None and CgroupTree(Path(cgroup)).kill_and_remove():
                found.add(pid)
        return found

    def sweep(self) -> None:
        """Remove what finished calls left behind, where it can be removed."""

    def close(self) -> None:
        """The daemon stops: remove what can be removed."""


class CgroupTrees(CallTrees):
    """A cgroup per call under ``<root>/noded-<daemon pid>``."""

    mode = "cgroup"

    def __init__(self, root: Path) -> None:
        self.root = root
        #: cgroups of finished calls that still held a process when released
        self._pending: set[CgroupTree] = set()
        #: the controllers a call's cgroup has, of those that bound it (memory, pids)
        self.controllers = _enable_controllers(root)

    def confine(self, pid: int, birth: str | None) -> Tree:
        self.sweep()
        tree = CgroupTree(self.root / f"call-{pid}", on_busy=self._pending.add)
        tree.path.mkdir(mode=0o755)
        (tree.path / "cgroup.procs").write_text(str(pid))
        return tree

    def sweep(self) -> None:
        for tree in list(self._pending):
            if tree.remove():
                self._pending.discard(tree)

    def close(self) -> None:
        self.sweep()
        with contextlib.suppress(OSError):
            self.root.rmdir()


class CgroupTree:
    """One call's cgroup; ``on_busy`` takes it if it cannot be removed when released."""

    def __init__(self, path: Path, on_busy: Callable[[CgroupTree], None] | None = None) -> None:
        self.path = path
        self._on_busy = on_busy
        #: the call's limits of those the kernel keeps, by limit name
        self._kept: dict[str, dict[str, Any]] = {}

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.kill").write_text("1")
            return
        _signal_all(self.members(), sig)

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
        """Remove the cgroup once it is empty; True once it is gone."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:  # EBUSY: something of the call still runs there
            return False
        return True

    def kill_and_remove(self) -> bool:
        members = self.members()
        self.signal(signal.SIGKILL)
        self.remove()
        return bool(members)


class MarkedTree:
    """One call's processes found by walking the process tree and reading environments:
    the leader's descendants (the leader is their subreaper: orphans stay in its tree
    while it runs), every process that shows the call's mark in ``/proc``, and every
    process seen in the call before that still runs, with its descendants (the leader may
    be gone by the time of the SIGKILL)."""

    def __init__(self, leader: int, birth: str | None) -> None:
        self.leader = leader
        self.mark = mark_of(leader, birth) if birth else None
        self._seen: dict[int, psutil.Process] = {}

    def signal(self, sig: int) -> None:
        """``sig`` to every process of the call but the leader (its group is signalled
        next); SIGKILL to the leader too, all of them stopped first (:func:`freeze_and_kill`)."""
        if sig == signal.SIGKILL:
            freeze_and_kill(self.members)
        else:
            _signal_all(self.members() - {self.leader}, sig)

    def members(self) -> set[int]:
        """The call's processes now, its leader included while it is there."""
        children, marked = _scan({self.mark} if self.mark else set())
        roots = {self.leader} | {pid for pid, proc in self._seen.items() if _same(proc)}
        found = _descendants_of(roots, children) | roots | set(marked)
        for pid in found - self._seen.keys() - {self.leader}:
            with contextlib.suppress(psutil.Error):
                self._seen[pid] = psutil.Process(pid)
        return found

    def release(self) -> None:
        self._seen.clear()

    def bound(self, limits: dict[str, Any]) -> set[str]:
        return set()  # RLIMIT_NPROC counts a user's processes, not a call's: none kept

    def exceeded(self) -> tuple[str, str] | None:
        return None

    def processes(self, table: ProcessTable) -> set[int]:
        """The leader and its descendants (all of the call's while the leader runs: it
        is their subreaper), zombies not counted."""
        tree = {self.leader} | _descendants_of({self.leader}, table.children)
        return tree - table.zombies


def freeze_and_kill(find: Callable[[], set[int]]) -> set[int]:
    """SIGSTOP what ``find()`` returns, again until it finds nothing new (a stopped
    process forks no more), then SIGKILL them all: none can start one that escapes the
    walk in between.  Returns the pids signalled."""
    stopped: set[int] = set()
    for _ in range(_FREEZE_ROUNDS):
        new = find() - stopped - {os.getpid()}
        if not new:
            break
        _signal_all(new, signal.SIGSTOP)
        stopped |= new
    _signal_all(stopped, signal.SIGKILL)
    return stopped


def descendants(pid: int) -> set[int]:
    with contextlib.suppress(psutil.Error):
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    return set()


def _scan(wanted: set[str]) -> tuple[dict[int, list[int]], dict[int, str]]:
    """One pass over every process: the children of each pid, and those showing one of
    the ``wanted`` marks in their environment (pid -> mark)."""
    children: dict[int, list[int]] = {}
    marked: dict[int, str] = {}
    for proc in psutil.process_iter(["ppid", "environ"] if wanted else ["ppid"]):
        ppid, environ = proc.info["ppid"], proc.info.get("environ")
        if ppid is not None:
            children.setdefault(ppid, []).append(proc.pid)
        mark = environ.get(CALL_MARK) if environ else None
        if mark in wanted:
            marked[proc.pid] = mark
    return children, marked


def _descendants_of(roots: set[int], children: dict[int, list[int]]) -> set[int]:
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _same(proc: psutil.Process) -> bool:
    """True while ``proc`` runs (a recycled pid is another process: its start differs)."""
    with contextlib.suppress(psutil.Error):
        return proc.is_running()
    return False


def _signal_all(pids: set[int] | list[int], sig: int) -> None:
    for pid in pids:
        if pid <= 0:  # 0 and -1 name groups, never one process of a call
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _kill_all(pids: set[int]) -> bool:
    _signal_all(pids, signal.SIGKILL)
    return bool(pids)


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:  # no such controller here
        return False
    return True


def _events(path: Path) -> dict[str, int]:
    """A cgroup ``*.events`` file: ``{"oom_kill": 1, ...}``; empty if unreadable."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {name: int(count) for name, _, count in (line.partition(" ") for line in lines)}


def _enable_controllers(root: Path) -> set[str]:
    """Give the calls' cgroups under ``root`` the memory and pids controllers, where the
    hierarchy has them and ``root`` may pass them on; the names of those they get."""
    for directory in (root.parent, root):
        for controller in _BOUNDING:
            _write(directory / "cgroup.subtree_control", f"+{controller}")
    try:
        enabled = set((root / "cgroup.subtree_control").read_text().split())
    except OSError:
        return set()
    return enabled & set(_BOUNDING)


def confine(trees: CallTrees, pid: int, birth: str | None) -> Tree:
    """``trees.confine(...)``; if the cgroup cannot be made, the process tree instead
    (said in the log: the call runs all the same)."""
    try:
        return trees.confine(pid, birth)
    except OSError as exc:
        event(log, "process.confine_failed", logging.WARNING, pid=pid, error=str(exc))
        return MarkedTree(pid, birth)


def choose(setting: str, daemon_pid: int) -> CallTrees:
    """The trees of this daemon: ``setting`` is a directory, ``auto`` or ``none``.  Says
    once, in the log, which it is and why."""
    root, why = _cgroup_root(setting)
    if root is not None:
        try:
            trees: CallTrees = CgroupTrees(_make_own(root / f"noded-{daemon_pid}"))
        except OSError as exc:
            root, why = None, f"cannot make a cgroup under {root}: {exc.strerror}"
    if root is None:
        trees = CallTrees()
        event(log, "process.isolation", logging.WARNING if setting != "none" else logging.INFO,
              mode=trees.mode, why=why)  # fmt: skip
    else:
        event(log, "process.isolation", mode=trees.mode, root=str(trees.root))  # type: ignore[attr-defined]
    return trees


def _cgroup_root(setting: str) -> tuple[Path | None, str]:
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


def _make_own(path: Path) -> Path:
    path.mkdir(mode=0o755, exist_ok=True)  # left by a daemon of the same pid: reusable
    return path
