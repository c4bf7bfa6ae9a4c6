"""Events: storing nodes' Reports (each ``(uuid, spool, seq)`` once) and WaitForEvents.

A waiter is woken by an in-process signal set as soon as a store commit returns, never
by polling: it takes the current signal, reads the store, and sleeps on that signal only
if nothing new matched, so an event stored between its read and its sleep still wakes it.

A node that floods cannot grow memory nor starve others: a Report holds at most
``max_report_events`` events, a node has one Report in flight at a time, and a token
bucket per node allows ``node_events_per_s`` sustained; past those the answer is
``413 RequestTooLarge`` or ``503 Busy`` with ``Retry-After``, counted in /metrics.
"""

from __future__ import annotations

import asyncio
import math
import time
from fnmatch import fnmatchcase

from masterd.daemon.metrics import MasterdMetrics
from masterd.store.base import NewEvent, Store, StoredEvent
from rpc_client.errors import NodeBusy, RequestTooLarge
from rpc_client.master_protocol import ReportRequest, WaitForEventsRequest
from rpc_client.protocol import dumps

#: events read from the store per look, and at most answered at once
PAGE = 1000
#: an answer stops adding events past this many bytes of their data (at least one goes)
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class _Bucket:
    """A token bucket: ``rate`` events per second, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self, count: int) -> float:
        """0 if ``count`` tokens were taken, else the seconds until there are enough."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if count <= self.tokens:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate


class EventLog:
    """The events' in-process side: limits, the newest id, and the waiters' signal."""

    def __init__(
        self, store: Store, metrics: MasterdMetrics, *, max_report_events: int,
        node_events_per_s: float, max_wait_s: float,
    ) -> None:  # fmt: skip
        self._store = store
        self._metrics = metrics
        self._max_report_events = max_report_events
        self._rate = node_events_per_s
        self._max_wait_s = max_wait_s
        self._buckets: dict[str, _Bucket] = {}
        self._reporting: set[str] = set()
        self._new = asyncio.Event()
        self._closing = False
        self.last_id = 0

    async def load(self) -> None:
        self.last_id = await self._store.last_event_id()

    def stored(self, events: list[StoredEvent]) -> None:
        """Events are committed: wake every waiter."""
        if not events:
            return
        self.last_id = max(self.last_id, events[-1].id)
        self._metrics.events_stored.inc(len(events))
        self._new.set()
        self._new = asyncio.Event()

    def advanced(self, newest_id: int) -> None:
        """Another masterd stored events up to ``newest_id`` (a shared store's
        notification, or its fallback poll): wake every waiter."""
        if newest_id > self.last_id:
            self.last_id = newest_id
            self._new.set()
            self._new = asyncio.Event()

    def close(self) -> None:
        """The daemon stops: every waiter answers now with what it has, rather than hold
        the shutdown up to its timeout."""
        self._closing = True
        self._new.set()

    async def report(self, request: ReportRequest, uuid: str, name: str) -> int:
        """Store a Report's events durably; its ``acked``."""
        self._admit(request, uuid)
        self._reporting.add(uuid)
        try:
            events = [
                NewEvent(uuid, name, e.type, e.at, e.data, e.fnc_id, request.spool, e.seq)
                for e in request.events
            ]
            reported = await self._store.add_reported(uuid, name, request.spool, events)
        finally:
            self._reporting.discard(uuid)
        self.stored(reported.stored)
        return max(reported.acked, 0)

    def _admit(self, request: ReportRequest, uuid: str) -> None:
        count = len(request.events)
        if count > self._max_report_events:
            self._metrics.reports_refused.labels("too_many_events").inc()
            raise RequestTooLarge(
                f"a Report holds at most {self._max_report_events} events, this one "
                f"{count}: send them in smaller batches (ganeti-masterd --max-report-events)"
            )
        if uuid in self._reporting:
            self._metrics.reports_refused.labels("concurrent").inc()
            raise NodeBusy("this node has a Report in flight already: send one at a time",
                           retry_after_s=1)  # fmt: skip
        bucket = self._buckets.get(uuid)
        if bucket is None:
            burst = max(self._rate, self._max_report_events)
            bucket = self._buckets[uuid] = _Bucket(self._rate, burst)
        wait_s = bucket.take(count)
        if wait_s:
            self._metrics.reports_refused.labels("rate").inc()
            raise NodeBusy(
                f"this node reports more than {self._rate:g} events/s "
                "(ganeti-masterd --node-events-per-s): send them again later",
                retry_after_s=math.ceil(wait_s),
            )

    async def wait(self, request: WaitForEventsRequest) -> tuple[list[StoredEvent], int]:
        """The events from ``request.from_id`` that pass its filters, and the next
        position; waits up to the request's timeout (capped) for the first."""
        position = self.last_id + 1 if request.from_id is None else request.from_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(request.timeout, self._max_wait_s)
        while True:
            signal = self._new
            if position <= self.last_id:
                batch = await self._store.events_after(position, PAGE)
                if batch:
                    position = batch[-1].id + 1
                matching = [e for e in batch if _fits(e, request)]
                if matching:
                    return _bounded(matching, position)
                if len(batch) == PAGE:
                    continue  # more to read past what did not match
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                return [], position
            try:
                async with asyncio.timeout(remaining):
                    await signal.wait()
            except TimeoutError:
                return [], position


def _fits(event: StoredEvent, request: WaitForEventsRequest) -> bool:
    if request.nodes is not None and event.node not in request.nodes:
        return False
    return request.types is None or any(fnmatchcase(event.type, p) for p in request.types)


def _bounded(events: list[StoredEvent], position: int) -> tuple[list[StoredEvent], int]:
    """At most :data:`MAX_ANSWER_BYTES` of events' data; the next position is then the
    first event left out."""
    size = 0
    for index, event in enumerate(events):
        size += len(dumps(event.data))
        if size > MAX_ANSWER_BYTES and index > 0:
            return events[:index], event.id
    return events, position
