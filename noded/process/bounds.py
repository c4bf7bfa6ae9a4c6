"""A call's limits over its whole process tree (``memory_mb``, ``processes``), where no
cgroup controller keeps them: checked every ``interval_s`` (``--limit-check-interval``),
off the event loop; a call past one is killed and fails with ``ResourceLimitExceeded``
(``limit``: ``"memory"`` or ``"processes"``).

What holds, exactly:

* memory: the sum of the proportional set sizes (PSS, ``/proc/PID/smaps_rollup``) of the
  call's living processes, so pages shared by several count once; a call may go past it
  for up to one interval (and the time a check takes) before it is killed.  Each process
  also has RLIMIT_AS at ``memory_mb``: none of them alone gets past it at all.
* processes: the call's living processes at once (zombies not counted), its own
  included; forks between two checks are not stopped, the call is killed at the next.
* the call's processes: its cgroup's, or its process's descendants (orphans among them:
  it is their subreaper); a process of the call that outlived the call's process is
  no longer counted, nor bounded.

With a cgroup that has the controllers (noded.process.tree), ``memory.max`` and
``pids.max`` keep them instead, at every allocation and fork: past ``memory.max`` the
kernel's OOM killer takes the whole call; past ``pids.max`` a fork fails with ``EAGAIN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from noded.process.cgroups import CgroupTree
from noded.process.child import limits as call_limits
from noded.process.function import FunctionProcess
from noded.process.process_table import ProcessTable, process_table
from rpc_client.logs import event

log = logging.getLogger("noded.process")

_MiB = 1024 * 1024


@dataclass(frozen=True)
class Bounded:
    """A call whose tree is checked: what it may hold, and its limits as given."""

    fnc_id: str
    proc: FunctionProcess
    memory_bytes: int | None
    processes: int | None
    limits: dict[str, Any]


class TreeBounds:
    """Checks the trees of the calls it is given, while there are any."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._calls: dict[str, Bounded] = {}
        self._task: asyncio.Task[None] | None = None
        #: a check still running in its thread (a slow /proc): the next waits for it
        self._check: asyncio.Future[list[tuple[Bounded, int, int]]] | None = None

    def watch(self, fnc_id: str, proc: FunctionProcess, limits: dict[str, Any]) -> None:
        """Bound ``proc``'s call by ``limits``: by its cgroup where it can, else here.
        Before the process gets its call."""
        kept = proc.tree.bound(limits) if proc.tree is not None else set()
        memory_mb = limits.get("memory_mb") if "memory_mb" not in kept else None
        processes = limits.get("processes") if "processes" not in kept else None
        if (memory_mb is None and processes is None) or proc.tree is None:
            return
        memory_bytes = int(memory_mb * _MiB) if memory_mb is not None else None
        processes = int(processes) if processes is not None else None
        self._calls[fnc_id] = Bounded(fnc_id, proc, memory_bytes, processes, limits)
        proc.reaped.add_done_callback(lambda _: self._calls.pop(fnc_id, None))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while self._calls:
            await asyncio.sleep(self.interval_s)
            calls = [call for call in self._calls.values() if not call.proc.decided.done()]
            if calls and (used := await self._measure(calls)) is not None:
                for call, memory, processes in used:
                    self._enforce(call, memory, processes)

    async def _measure(self, calls: list[Bounded]) -> list[tuple[Bounded, int, int]] | None:
        if self._check is None or self._check.done():
            self._check = asyncio.ensure_future(asyncio.to_thread(measure, calls))
        done, _ = await asyncio.wait({self._check}, timeout=max(5.0, 10 * self.interval_s))
        if not done:
            event(log, "limits.check_slow", logging.WARNING, calls=len(calls))
            return None
        try:
            return self._check.result()
        except OSError as exc:  # /proc unreadable for now (no descriptor left): next round
            event(log, "limits.check_failed", logging.WARNING, calls=len(calls), error=str(exc))
            return None

    def _enforce(self, call: Bounded, memory: int, processes: int) -> None:
        if call.proc.decided.done() or call.proc.reaped.done():
            return
        if call.processes is not None and processes > call.processes:
            limit = "processes"
        elif call.memory_bytes is not None and memory > call.memory_bytes:
            limit = "memory"
        else:
            return
        event(log, "call.limit_exceeded", logging.WARNING, fnc_id=call.fnc_id, limit=limit,
              processes=processes, memory_mb=round(memory / _MiB, 1))  # fmt: skip
        call.proc.exceed(limit, call_limits.what(limit, call.limits))


def measure(calls: Sequence[Bounded]) -> list[tuple[Bounded, int, int]]:
    """``(call, memory in bytes, processes)`` of each call's tree, now (in a thread)."""
    walked = any(not isinstance(call.proc.tree, CgroupTree) for call in calls)
    table = process_table() if walked else ProcessTable()
    used = []
    for call in calls:
        assert call.proc.tree is not None
        pids = call.proc.tree.processes(table)
        memory = sum(map(_pss, pids)) if call.memory_bytes is not None else 0
        used.append((call, memory, len(pids)))
    return used


def _pss(pid: int) -> int:
    """A process's proportional set size in bytes; 0 if it is gone."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith(b"Pss:"):
                return int(line.split()[1]) * 1024
    return 0
