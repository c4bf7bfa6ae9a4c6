"""Which spawner makes the next call's process, and the spawners replaced by a reload
(ReloadFunctions: a new fork server with the new code) that still have calls running.

A replaced spawner is closed only once every process it made has been reaped: closing
it earlier would stop watching those processes (and lose their exit status).
"""

from __future__ import annotations

import asyncio
import logging

from noded.process.spawners import Spawner
from rpc_client.logs import event

log = logging.getLogger("noded.calls")

_CLOSE_TIMEOUT_S = 30.0


class Spawners:
    """The spawner in use, and the retired ones until their calls are done."""

    def __init__(self, spawner: Spawner) -> None:
        self.current = spawner
        #: fnc_id -> the spawner that made its process, while it is not reaped
        self._made_by: dict[str, Spawner] = {}
        self._retired: list[Spawner] = []
        self._closing: set[asyncio.Task[None]] = set()

    def made(self, fnc_id: str, spawner: Spawner) -> None:
        self._made_by[fnc_id] = spawner

    def reaped(self, fnc_id: str) -> None:
        self._made_by.pop(fnc_id, None)
        if self._retired:
            self._close_idle()

    def replace(self, spawner: Spawner) -> None:
        """Use ``spawner`` for new calls; the old one goes once its calls are done."""
        self._retired.append(self.current)
        self.current = spawner
        self._close_idle()

    def _close_idle(self) -> None:
        busy = set(self._made_by.values())
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
