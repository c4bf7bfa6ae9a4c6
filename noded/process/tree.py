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

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

from noded.process.cgroups import (
    CgroupTree,
    cgroup_root,
    enable_controllers,
    make_own,
    remove_leftovers,
    remove_when_empty,
    signal_all,
)
from noded.process.child.frames import mark_of
from noded.process.leftovers import process_birth
from noded.process.process_table import ProcessTable, process_table
from rpc_client.logs import event

log = logging.getLogger("noded.process")

#: most walks of a call's tree while freezing it (each stops what the last one missed)
_FREEZE_ROUNDS = 8


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


class CallTrees:
    """Makes one :class:`Tree` per call; ``confine(pid)`` before the process gets its
    call.  The fallback when no cgroup can be had."""

    mode = "process-tree"
    #: the directory of this daemon's call cgroups, if it has one
    root: Path | None = None

    def confine(self, pid: int, birth: str | None) -> Tree:
        return MarkedTree(pid, birth)

    def kill_leftovers(self, leftovers: list[tuple[int, str | None, str | None]]) -> set[int]:
        """SIGKILL what calls of a crashed daemon left: ``(pid, birth, cgroup)`` each;
        the pids of those that had something left."""
        marks = {mark_of(pid, birth): pid for pid, birth, _ in leftovers if birth}
        leaders = {pid for pid, birth, _ in leftovers if birth and process_birth(pid) == birth}
        found = set(leaders)

        def members(_: bool) -> set[int]:
            table = process_table(marks=True)  # at start: no table to share yet
            marked = table.marked(set(marks))
            found.update(marks[mark] for mark in marked.values())
            return table.descendants(leaders) | leaders | set(marked)

        freeze_and_kill(members)
        cgroups = {pid: CgroupTree(Path(path)) for pid, _, path in leftovers if path}
        found.update(pid for pid, tree in cgroups.items() if tree.members())
        for tree in cgroups.values():
            tree.signal(signal.SIGKILL)
        remove_when_empty(cgroups.values())  # a cgroup.kill takes a moment to empty it
        for daemon in {tree.path.parent for tree in cgroups.values()} - {self.root}:
            with contextlib.suppress(OSError):  # the crashed daemon's own, now empty
                daemon.rmdir()
        return found

    def sweep(self) -> None:
        """Remove what finished calls left behind, where it can be removed."""

    def close(self) -> None:
        """The daemon stops: finish the kills under way, remove what can be removed."""
        _FREEZES.finish()  # none is left stopped and never killed


class CgroupTrees(CallTrees):
    """A cgroup per call under ``<root>/noded-<daemon pid>``."""

    mode = "cgroup"

    root: Path

    def __init__(self, root: Path) -> None:
        self.root = root
        #: cgroups of finished calls that still held a process when released
        self._pending: set[CgroupTree] = set()
        #: the controllers a call's cgroup has, of those that bound it (memory, pids)
        self.controllers = enable_controllers(root)
        remove_leftovers(root.parent, root)

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
        super().close()
        remove_when_empty(self._pending)  # killed at shutdown: emptying now
        self._pending.clear()
        with contextlib.suppress(OSError):
            self.root.rmdir()


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
        next).  A SIGKILL stops them all first (the leader too, which its group's SIGKILL
        then takes), and kills them once a fresh look finds no more (:class:`_Freezes`)."""
        found = self.members(process_table(marks=self.mark is not None, shared=True))
        if sig != signal.SIGKILL:
            signal_all(found - {self.leader}, sig)
            return
        signal_all(found - {os.getpid()}, signal.SIGSTOP)
        _FREEZES.add(self, found - {os.getpid()})

    def members(self, table: ProcessTable, roots: set[int] | None = None) -> set[int]:
        """The call's processes in ``table``: ``roots`` (by default the leader and every
        process seen in the call before that still runs), their descendants, and those
        showing the call's mark."""
        marked = table.marked({self.mark}) if self.mark else {}
        if roots is None:
            roots = {self.leader} | {pid for pid, proc in self._seen.items() if _same(proc)}
        found = table.descendants(roots) | roots | set(marked)
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
        tree = {self.leader} | table.descendants({self.leader})
        return tree - table.zombies


class _Freezes:
    """The SIGKILLs of walked trees asked for in one turn of the event loop, finished
    together at its end: one fresh look at /proc for them all, not one each (a shutdown
    kills hundreds of calls at once), and again while one finds more to stop."""

    def __init__(self) -> None:
        self._pending: list[tuple[MarkedTree, set[int]]] = []

    def add(self, tree: MarkedTree, stopped: set[int]) -> None:
        self._pending.append((tree, stopped))
        if len(self._pending) > 1:
            return  # already due
        try:
            asyncio.get_running_loop().call_soon(self.finish)
        except RuntimeError:  # no event loop: finish now
            self.finish()

    def finish(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        for _ in range(_FREEZE_ROUNDS):
            table, grew = process_table(marks=True), False
            for tree, stopped in pending:
                # not from the leader: it may be reaped by now (its group took it)
                new = tree.members(table, stopped - {tree.leader}) - stopped - {os.getpid()}
                signal_all(new, signal.SIGSTOP)
                stopped |= new
                grew = grew or bool(new)
            if not grew:
                break
        for tree, stopped in pending:
            signal_all(stopped - {tree.leader}, signal.SIGKILL)


_FREEZES = _Freezes()


def freeze_and_kill(find: Callable[[bool], set[int]]) -> set[int]:
    """SIGSTOP what ``find(shared)`` returns, again until a fresh look finds nothing new
    (a stopped process forks no more), then SIGKILL them all: none can start one that
    escapes the walk in between.  The first look may take a shared table (``shared``
    True): what it misses, the fresh one finds.  Returns the pids signalled."""
    stopped: set[int] = set()
    for round_ in range(_FREEZE_ROUNDS):
        new = find(round_ == 0) - stopped - {os.getpid()}
        if not new and round_ > 0:
            break
        signal_all(new, signal.SIGSTOP)
        stopped |= new
    signal_all(stopped, signal.SIGKILL)
    return stopped


def _same(proc: psutil.Process) -> bool:
    """True while ``proc`` runs (a recycled pid is another process: its start differs)."""
    with contextlib.suppress(psutil.Error):
        return proc.is_running()
    return False


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
    root, why = cgroup_root(setting)
    if root is not None:
        try:
            trees: CallTrees = CgroupTrees(make_own(root / f"noded-{daemon_pid}"))
        except OSError as exc:
            root, why = None, f"cannot make a cgroup under {root}: {exc.strerror}"
    if root is None:
        trees = CallTrees()
        event(log, "process.isolation", logging.WARNING if setting != "none" else logging.INFO,
              mode=trees.mode, why=why)  # fmt: skip
    else:
        event(log, "process.isolation", mode=trees.mode, root=str(trees.root),
              controllers=",".join(sorted(trees.controllers)) or "none")  # type: ignore[attr-defined]  # fmt: skip
    return trees
