"""A :class:`~noded.process.spawners.Spawner` for unit tests of the layers above it: its
processes are real (an interpreter each, running ``tests.functions``), and the test
chooses what goes wrong (a failed take, a take held until released, a process that
dies before its call)."""

from __future__ import annotations

import asyncio

from noded.process.function import FunctionProcess
from noded.process.outcome import ProcessLimits
from noded.process.spawners import ExecSpawner, Spawner


class FakeSpawner:
    """Hands out real processes (made by an :class:`ExecSpawner`), with faults on demand."""

    def __init__(self, limits: ProcessLimits | None = None) -> None:
        self._made_by = ExecSpawner(["tests.functions"], limits or ProcessLimits(kill_grace_s=1))
        #: every process taken, in order
        self.taken: list[FunctionProcess] = []
        #: raised by the next takes, one each, instead of making a process
        self.failures: list[BaseException] = []
        #: while set, a take waits until it is cleared (a fork that takes its time)
        self.hold: asyncio.Event | None = None
        #: the processes handed out are killed first (gone before their call)
        self.dead_on_arrival = False
        self.retired = False
        self.closed = False

    async def take(self) -> FunctionProcess:
        if self.hold is not None:
            await asyncio.wait_for(self.hold.wait(), 30)
        if self.failures:
            raise self.failures.pop(0)
        proc = await self._made_by.take()
        self.taken.append(proc)
        if self.dead_on_arrival:
            proc.kill_group()
            await proc.wait_reaped(10)
        return proc

    def retire(self) -> None:
        self.retired = True

    async def close(self) -> None:
        self.closed = True
        await self._made_by.close()

    async def stop_all(self) -> None:
        """Kill what is still running of the processes taken (a test's cleanup)."""
        for proc in self.taken:
            proc.kill_group()
        for proc in self.taken:
            await proc.wait_reaped(10)
        for proc in self.taken:
            assert proc.reaped.done(), f"pid {proc.pid} was not reaped"


#: mypy checks here that it follows the protocol: drift in either fails `make lint`
_: type[Spawner] = FakeSpawner
