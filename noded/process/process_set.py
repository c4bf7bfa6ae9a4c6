"""The live function processes of the daemon, for abort and shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from noded.process.bounds import TreeBounds
from noded.process.function import FunctionProcess


@dataclass
class ProcessSet:
    """The live function processes by call id, until each is reaped: for abort and
    shutdown, and to keep each call's limits over its whole tree (``bounds``)."""

    live: dict[str, FunctionProcess] = field(default_factory=dict)
    bounds: TreeBounds = field(default_factory=lambda: TreeBounds(0.5))

    def add(self, key: str, proc: FunctionProcess, limits: dict[str, Any] | None = None) -> None:
        """Take ``proc`` in, before it gets its call; bound its tree by ``limits``."""
        self.live[key] = proc
        proc.reaped.add_done_callback(lambda _: self.live.pop(key, None))
        if limits:
            self.bounds.watch(key, proc, limits)

    def get(self, key: str) -> FunctionProcess | None:
        return self.live.get(key)

    def unreaped(self) -> list[FunctionProcess]:
        """Those not reaped yet: one reaped in this turn of the loop leaves ``live`` only
        in the next, when its done callback runs."""
        return [proc for proc in self.live.values() if not proc.reaped.done()]

    async def terminate_all(self, grace_s: float) -> None:
        """SIGTERM every group, wait up to ``grace_s``, SIGKILL the rest, wait for reaping."""
        procs = self.unreaped()
        for proc in procs:
            proc.terminate_group(kill_after_s=grace_s)
        await _wait_all(procs, grace_s)
        for proc in procs:
            proc.kill_group()
        await _wait_all(procs, 5.0)
        self.bounds.close()


async def _wait_all(procs: list[FunctionProcess], timeout_s: float) -> None:
    pending = [proc.reaped for proc in procs if not proc.reaped.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)
