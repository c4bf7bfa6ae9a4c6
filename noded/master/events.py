"""The daemon's events on their way to the spool: ``emit`` never waits.

``emit`` (the daemon's own events, and those functions send on their frame channel)
puts an event in a bounded buffer in memory and wakes the reporter; the reporter moves
the buffer into the spool (:mod:`.spool`, one fsynced transaction a batch) on a thread
of its own, and reads from there what it sends.  A buffer that is full when the spool
cannot keep up (a stalled disk) drops its oldest events, and the spool's next
``spool.dropped`` event counts them; the buffer is bounded in events and in bytes.
A batch the spool cannot take because its disk is full is dropped, not kept: it is
counted (the metric at once, the spool's next ``spool.dropped`` event once there is room)
and logged (``spool.write_failed``, at most once every :data:`LOG_EVERY_S`); a call that
emits never sees it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from noded.master.spool import BATCH_BYTES, NewEvent, Spool
from rpc_client.logs import RateLimit, event
from rpc_client.master_protocol import NodeEvent

log = logging.getLogger("noded.master")

T = TypeVar("T")

#: the longest a spool operation may take (a hung disk): then it is given up for now
SPOOL_TIMEOUT_S = 30.0
#: the longest event type
MAX_TYPE_CHARS = 200
#: the most bytes of an event's data (emit() refuses more in the function)
MAX_DATA_BYTES = 256 * 1024
#: the most bytes of events waiting in memory for the spool (and at most the spool's bound)
MAX_BUFFERED_BYTES = 16 << 20
#: a spool that cannot be written is logged at most this often
LOG_EVERY_S = 10.0
#: SQLite's "database or disk is full"
_SQLITE_FULL = 13


class EventQueue:
    """The buffer in front of the spool, and the spool's thread."""

    def __init__(
        self, spool: Spool, max_buffered: int, on_dropped: Callable[[int], None] | None = None
    ) -> None:
        self.spool = spool
        self._on_dropped = on_dropped
        self._max_buffered = max_buffered
        self._max_buffered_bytes = min(MAX_BUFFERED_BYTES, spool.max_bytes)
        self._buffer: list[NewEvent] = []
        self._buffered_bytes = 0
        #: events dropped before they reached the spool, for its next spool.dropped event
        self._lost = 0
        self._logged_at = -LOG_EVERY_S
        #: spool.dropped log lines: one every LOG_EVERY_S, with what was dropped meanwhile
        self._dropped_log = RateLimit(LOG_EVERY_S)
        self._dropped_unlogged = 0
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
            size = len(orjson.dumps(data))
        size += len(kind) + len(fnc_id or "")
        at = time.time() if at is None else at
        self._buffer.append(NewEvent(kind, data, fnc_id, at, size))
        self._buffered_bytes += size
        lost = 0
        while len(self._buffer) > 1 and (
            len(self._buffer) > self._max_buffered
            or self._buffered_bytes > self._max_buffered_bytes
        ):
            self._buffered_bytes -= self._buffer.pop(0).size  # the oldest first, as in the spool
            lost += 1
        if lost:
            self._lose(lost)
        self.wake.set()

    def _lose(self, count: int) -> None:
        """``count`` events were dropped before the spool: counted now, and in the
        spool's next ``spool.dropped`` event."""
        self._lost += count
        if self._on_dropped is not None:
            self._on_dropped(count)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def flush(self) -> None:
        """Move the buffer into the spool (fsynced), in transactions of at most
        :data:`BATCH_BYTES`; on failure what is left is kept for next time, unless the
        spool's disk is full (then the batch is dropped, counted)."""
        while self._buffer or self._lost:
            if not await self._flush_batch(self._take_batch()):
                return

    def _take_batch(self) -> list[NewEvent]:
        size, count = 0, 0
        for count, new in enumerate(self._buffer, 1):  # noqa: B007
            size += new.size
            if size >= BATCH_BYTES:
                break
        batch, self._buffer = self._buffer[:count], self._buffer[count:]
        self._buffered_bytes -= size
        return batch

    async def _flush_batch(self, batch: list[NewEvent]) -> bool:
        """Spool ``batch``; False when the disk is full (it, and all that waits, dropped)."""
        lost, self._lost = self._lost, 0
        try:
            dropped = await self._run(self.spool.append, batch, lost)
        except (sqlite3.Error, OSError) as exc:
            self._lost += lost
            if not _disk_full(exc):
                self._put_back(batch)
                raise
            dropped = len(batch) + len(self._buffer)
            self._buffer, self._buffered_bytes = [], 0
            self._lose(dropped)
            self._log_write_failed(exc, dropped)
            return False
        except BaseException:
            self._lost += lost
            self._put_back(batch)
            raise
        if dropped or lost:
            self._log_dropped(dropped + lost)
        if dropped and self._on_dropped is not None:
            self._on_dropped(dropped)
        return True

    def _log_dropped(self, count: int) -> None:
        self._dropped_unlogged += count
        if self._dropped_log.allow():
            event(log, "spool.dropped", logging.WARNING, dropped=self._dropped_unlogged,
                  max_events=self.spool.max_events, max_bytes=self.spool.max_bytes,
                  lines_suppressed=self._dropped_log.take_suppressed())  # fmt: skip
            self._dropped_unlogged = 0

    def _put_back(self, batch: list[NewEvent]) -> None:
        self._buffer[:0] = batch  # oldest first still
        self._buffered_bytes += sum(new.size for new in batch)

    def _log_write_failed(self, exc: BaseException, dropped: int) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            event(log, "spool.write_failed", logging.WARNING, error=str(exc), dropped=dropped,
                  path=str(self.spool.path))  # fmt: skip

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


def _disk_full(exc: BaseException) -> bool:
    """True when ``exc`` says the spool's file system is full (or its quota used up)."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
