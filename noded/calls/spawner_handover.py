"""Which spawner makes the next call's process, and the spawners replaced by a reload
(ReloadFunctions: a new fork server with the new code) that still have calls running.

A replaced spawner is closed only once every process it made has been reaped and none is
being made: closing it earlier would stop watching those processes (and lose their exit
status), or fail a call waiting for its fork.
"""

from __future__ import annotations

import asyncio
import logging

from noded.metrics import Metrics
from noded.process.function import FunctionProcess
from noded.process.leftovers import is_resource_shortage
from noded.process.spawners import Spawner
from rpc_client.errors import NodeBusy
from rpc_client.logs import RateLimit, event

log = logging.getLogger("noded.calls")

_CLOSE_TIMEOUT_S = 30.0
#: Retry-After of a 503 Busy: processes, descriptors and slots free up within seconds
BUSY_RETRY_AFTER_S = 1
#: a start that fails for want of processes or descriptors is logged at most this often
_LOG_EVERY_S = 10.0


class Spawners:
    """The spawner in use, and the retired ones until their calls are done."""

    def __init__(self, spawner: Spawner, metrics: Metrics) -> None:
        self.current = spawner
        self._metrics = metrics
        #: process -> the spawner that made it, while it is not reaped
        self._made_by: dict[FunctionProcess, Spawner] = {}
        self._retired: list[Spawner] = []
        #: spawner -> the processes it is making now (not yet in ``_made_by``)
        self._spawning: dict[Spawner, int] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._failures = RateLimit(_LOG_EVERY_S)

    async def take(self) -> FunctionProcess:
        """A process waiting for a call, from the spawner in use; a shortage of processes
        or descriptors is :class:`NodeBusy` (it passes with time).  A spawner a reload
        replaces while it makes this process stays open until the process is reaped."""
        spawner = self.current
        self._spawning[spawner] = self._spawning.get(spawner, 0) + 1
        try:
            proc = await self._take_from(spawner)
            self._made_by[proc] = spawner
            proc.reaped.add_done_callback(lambda _: self._reaped(proc))
            return proc
        finally:
            self._spawning[spawner] -= 1
            if not self._spawning[spawner]:
                del self._spawning[spawner]
            if self._retired:
                self._close_idle()

    async def _take_from(self, spawner: Spawner) -> FunctionProcess:
        try:
            return await spawner.take()
        except OSError as exc:
            if not is_resource_shortage(exc):
                raise
            if self._failures.allow():  # a shortage fails every start: one line in 10 s
                event(log, "spawn.failed", level=logging.WARNING, error=str(exc),
                      suppressed=self._failures.take_suppressed())  # fmt: skip
            self._metrics.rejections.labels("process_resources").inc()
            raise NodeBusy(
                f"cannot start a function process now: {exc}", retry_after_s=BUSY_RETRY_AFTER_S
            ) from exc

    def _reaped(self, proc: FunctionProcess) -> None:
        self._made_by.pop(proc, None)
        if self._retired:
            self._close_idle()

    def replace(self, spawner: Spawner) -> None:
        """Use ``spawner`` for new calls; the old one goes once its calls are done (it
        keeps no spare meanwhile)."""
        self.current.retire()
        self._retired.append(self.current)
        self.current = spawner
        self._close_idle()

    def _close_idle(self) -> None:
        busy = {*self._made_by.values(), *self._spawning}
        for spawner in [s for s in self._retired if s not in busy]:
            self._retired.remove(spawner)
            task = asyncio.get_running_loop().create_task(_close(spawner))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every spawner (at shutdown, once every process is reaped)."""
        for spawner in [*self._retired, self.current]:
            await _close(spawner)
        self._retired = []
        if self._closing:
            await asyncio.wait(self._closing, timeout=_CLOSE_TIMEOUT_S)


async def _close(spawner: Spawner) -> None:
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await spawner.close()
    except (TimeoutError, OSError) as exc:
        event(log, "spawner.close_failed", logging.WARNING, error=str(exc) or "timeout")
