"""The daemon's events on their way to the spool: ``emit`` never waits.

``emit`` (the daemon's own events, and those functions send on their frame channel)
puts an event in a bounded buffer in memory and wakes the reporter; the reporter moves
the buffer into the spool (:mod:`.spool`, one fsynced transaction a batch) on a thread
of its own, and reads from there what it sends.  A buffer that is full when the spool
cannot keep up (a stalled disk) drops its oldest events, and the spool's next
``spool.dropped`` event counts them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from noded.master.spool import NewEvent, Spool
from rpc_client.logs import event
from rpc_client.master_protocol import NodeEvent

log = logging.getLogger("noded.master")

T = TypeVar("T")

#: the longest a spool operation may take (a hung disk): then it is given up for now
SPOOL_TIMEOUT_S = 30.0
#: the longest event type
MAX_TYPE_CHARS = 200
#: the most bytes of an event's data (emit() refuses more in the function)
MAX_DATA_BYTES = 256 * 1024


class EventQueue:
    """The buffer in front of the spool, and the spool's thread."""

    def __init__(
        self, spool: Spool, max_buffered: int, on_dropped: Callable[[int], None] | None = None
    ) -> None:
        self.spool = spool
        self._on_dropped = on_dropped
        self._max_buffered = max_buffered
        self._buffer: list[NewEvent] = []
        self._lost = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="noded-spool")
        #: set when there is something new to send
        self.wake = asyncio.Event()

    def emit(
        self, kind: str, data: Any = None, fnc_id: str | None = None, at: float | None = None
    ) -> None:
        """Queue an event; never blocks.  ``data`` must be JSON (else it is replaced by
        a note saying why: an event is never refused at this point)."""
        if not isinstance(kind, str) or not kind or len(kind) > MAX_TYPE_CHARS:
            kind = "event.invalid"
        try:
            size = len(orjson.dumps(data))
        except (TypeError, orjson.JSONEncodeError) as exc:
            data, size = {"error": f"data is not JSON: {exc}"}, 0
        if size > MAX_DATA_BYTES:  # written on fd 3 by other means than emit()
            data = {"error": f"data of {size} bytes, over {MAX_DATA_BYTES}: left out"}
        if len(self._buffer) >= self._max_buffered:
            del self._buffer[0]  # the oldest first, as in the spool
            self._lost += 1
        self._buffer.append(NewEvent(kind, data, fnc_id, time.time() if at is None else at))
        self.wake.set()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def flush(self) -> None:
        """Move the buffer into the spool (fsynced); on failure it is kept for next time."""
        if not self._buffer and not self._lost:
            return
        batch, lost = self._buffer, self._lost
        self._buffer, self._lost = [], 0
        try:
            dropped = await self._run(self.spool.append, batch, lost)
        except BaseException:
            self._buffer[:0] = batch  # oldest first still
            self._lost += lost
            raise
        if dropped or lost:
            event(log, "spool.dropped", logging.WARNING, dropped=dropped + lost,
                  max_events=self.spool.max_events)  # fmt: skip
            if self._on_dropped is not None:
                self._on_dropped(dropped + lost)

    async def pending(self, limit: int) -> list[NodeEvent]:
        return await self._run(self.spool.pending, limit)

    async def acknowledge(self, acked: int) -> None:
        await self._run(self.spool.acknowledge, acked)

    async def close(self) -> None:
        await self._run(self.spool.close)
        self._executor.shutdown(wait=False)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, function, *args)
        return await asyncio.wait_for(future, SPOOL_TIMEOUT_S)
