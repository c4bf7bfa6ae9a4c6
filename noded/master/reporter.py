"""The reporter: registers the node, heartbeats, and delivers its events.

Two tasks.  One keeps the node registered: Register at start (again when a master says
``reregister`` or ``409 NotRegistered``, and after a reload changed the functions), then a
Heartbeat every ``heartbeat_s`` (from Register's answer) x a random 0.8-1.2.  The other
delivers events: woken by each new one, it moves them into the spool and sends the oldest
unacknowledged ones in a Report (up to :data:`REPORT_EVENTS` and :data:`REPORT_BYTES`;
under load the next Report goes at once with the next batch), forgets those
acknowledged, and sends again what was not.

When no master answers, both back off with jitter and try again; nothing else of the
daemon waits for them: the node serves its calls as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import orjson

from noded.master.events import EventQueue
from noded.master.link import MasterLink
from noded.master.metrics import MasterMetrics
from rpc_client.errors import (
    NodeConflict,
    NodeUnreachable,
    NotRegistered,
    RequestTooLarge,
    RPCError,
)
from rpc_client.logs import event
from rpc_client.master_protocol import (
    HEARTBEAT,
    REGISTER,
    REPORT,
    HeartbeatRequest,
    NodeEvent,
    RegisterRequest,
)

log = logging.getLogger("noded.master")

#: events in one Report (masterd takes 1,000 by default)
REPORT_EVENTS = 500
#: the encoded events of one Report, at most (masterd takes 16 MiB by default); an event
#: is at most 256 KiB (noded.master.events.MAX_DATA_BYTES)
REPORT_BYTES = 4 * 2**20
#: the longest a request to the masters may take, all of them tried
REQUEST_TIMEOUT_S = 10.0
#: unacknowledged events are sent again at least this often
RESEND_S = 5.0
#: the heartbeat interval until a master has said its own
DEFAULT_HEARTBEAT_S = 30.0
_STOP_TASKS_S = 2.0


class Backoff:
    """Waits that double from ``first_s`` up to ``most_s``, each x a random 0.5-1.5."""

    def __init__(self, first_s: float = 0.1, most_s: float = 5.0) -> None:
        self._first_s, self._most_s, self._failures = first_s, most_s, 0

    def reset(self) -> None:
        self._failures = 0

    async def sleep(self) -> None:
        delay_s = min(self._most_s, self._first_s * 2**self._failures)
        self._failures = min(self._failures + 1, 30)
        await asyncio.sleep(delay_s * random.uniform(0.5, 1.5))


class Reporter:
    """The node's registration and event delivery, for as long as the daemon runs."""

    def __init__(
        self,
        link: MasterLink,
        events: EventQueue,
        registration: Callable[[], RegisterRequest],
        running: Callable[[], int],
        metrics: MasterMetrics,
    ) -> None:
        self.link = link
        self.metrics = metrics
        self.events = events
        self._registration = registration
        self._running = running
        self.heartbeat_s = DEFAULT_HEARTBEAT_S
        self.registered = asyncio.Event()
        self._register_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._uuid = self._instance = ""
        self._functions: tuple[str, ...] = ()
        self._last_errors: dict[str, str] = {}
        #: no master answered the last request: the next answer is logged (master.reachable)
        self._unreachable = False
        #: events in the next Report: halved when a master finds a Report too large
        self._batch = REPORT_EVENTS

    def start(self) -> None:
        """Begin (once the node listens: Register says its port)."""
        registration = self._registration()
        self._uuid, self._instance = registration.uuid, registration.instance
        self._tasks = [
            asyncio.create_task(self._keep_registered(), name="master-registration"),
            asyncio.create_task(self._deliver_forever(), name="master-delivery"),
        ]

    async def stop(self, deliver_within_s: float) -> None:
        """Stop both tasks, then deliver what is spooled for up to ``deliver_within_s``
        (what is not delivered stays in the spool for the next start)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_STOP_TASKS_S)
        with contextlib.suppress(TimeoutError, RPCError, sqlite3.Error, OSError):
            async with asyncio.timeout(deliver_within_s):
                if self._tasks:
                    await self._deliver_all()
                else:  # never started (the port could not be opened): spool only
                    await self.events.flush()

    # --- registration and heartbeats -------------------------------------------------

    async def _keep_registered(self) -> None:
        backoff = Backoff()
        while True:
            if not self.registered.is_set():
                if not await self._register():
                    await backoff.sleep()
                    continue
                backoff.reset()
            await _wait(self._register_now, self.heartbeat_s * random.uniform(0.8, 1.2))
            if self._register_now.is_set():
                self._register_now.clear()
                self.registered.clear()
                continue
            await self._heartbeat()

    async def _register(self) -> bool:
        registration = self._registration()
        try:
            answer = await self.link.request(REGISTER, registration.to_wire(), REQUEST_TIMEOUT_S)
        except (NodeUnreachable, NodeConflict, RPCError) as exc:
            self._failed("master.register_failed", exc)
            self.metrics.failures.labels(REGISTER).inc()
            return False
        self.link.learn(answer.get("masters"))
        heartbeat_s = answer.get("heartbeat_s")
        if isinstance(heartbeat_s, int | float) and heartbeat_s > 0:
            self.heartbeat_s = float(heartbeat_s)
        self._answered()
        event(log, "master.registered", master=self.link.current, heartbeat_s=self.heartbeat_s,
              instance=registration.instance)  # fmt: skip
        self._functions = registration.functions
        self._last_errors.clear()
        self.metrics.registered.set(1)
        self.registered.set()
        self.events.wake.set()  # what waited for the registration goes now
        return True

    async def _heartbeat(self) -> None:
        if self._registration().functions != self._functions:
            self.registered.clear()  # reloaded: the masters learn the new functions
            return
        beat = HeartbeatRequest(self._uuid, self._instance, self._running())
        try:
            answer = await self.link.request(HEARTBEAT, beat.to_wire(), REQUEST_TIMEOUT_S)
        except NotRegistered:
            self._forgotten()
            return
        except RPCError as exc:
            self._failed("master.heartbeat_failed", exc)
            self.metrics.failures.labels(HEARTBEAT).inc()
            return
        self._last_errors.pop("master.heartbeat_failed", None)
        self._answered()
        if answer.get("reregister") is True:
            self._forgotten()

    def _forgotten(self) -> None:
        """A master does not know this node (any more): register again."""
        self.metrics.registered.set(0)
        self.registered.clear()

    def _failed(self, name: str, exc: Exception) -> None:
        """Log a failure: a warning when it is new, then quietly until it changes (a
        master down for hours is one warning, not one every few seconds).  Numbers do not
        make it new: "heard from 9 s ago", then "10 s ago", is the same failure."""
        error = str(exc)
        same = _NUMBER.sub("#", error)
        level = logging.DEBUG if self._last_errors.get(name) == same else logging.WARNING
        self._last_errors[name] = same
        if isinstance(exc, NodeUnreachable):  # the masters it tried are in the message
            self._unreachable = True
            event(log, name, level, error=error)
        else:  # the master that answered with this error
            event(log, name, level, master=self.link.current, error=error)

    def _answered(self) -> None:
        """A master answered: said once if none did before."""
        if self._unreachable:
            self._unreachable = False
            event(log, "master.reachable", master=self.link.current)

    def reregister(self) -> None:
        """Register again now (a master said it does not know this node)."""
        self._register_now.set()

    # --- events ---------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        backoff = Backoff()
        while True:
            await _wait(self.events.wake, RESEND_S)
            self.events.wake.clear()
            try:
                await self.events.flush()
                if not self.registered.is_set():
                    continue  # the registration wakes this task again
                await self._deliver_all()
            except NotRegistered:
                self.reregister()
            except (RPCError, sqlite3.Error, OSError, TimeoutError) as exc:
                self._failed("master.report_failed", exc)
                self.metrics.failures.labels(REPORT).inc()
                self.events.wake.set()  # try again after the backoff
                await backoff.sleep()
                continue
            backoff.reset()
            if self._last_errors.pop("master.report_failed", None) is not None:
                self._answered()

    async def _deliver_all(self) -> None:
        """Send Reports until the spool holds nothing unacknowledged."""
        while True:
            await self.events.flush()
            pending = _within_bytes(await self.events.pending(self._batch))
            if not pending:
                return
            started = time.monotonic()
            body: dict[str, Any] = {"uuid": self._uuid, "spool": self.events.spool.spool_id,
                                    "events": [item.to_wire() for item in pending]}  # fmt: skip
            try:
                answer = await self.link.request(REPORT, body, REQUEST_TIMEOUT_S)
            except RequestTooLarge:
                self._batch = max(1, self._batch // 2)  # a master with a lower limit
                raise
            acked = answer.get("acked")
            if not isinstance(acked, int) or acked < pending[0].seq:
                raise NodeUnreachable(f"a Report answered without progress: acked={acked!r}")
            await self.events.acknowledge(acked)
            self.metrics.delivered.inc(sum(1 for item in pending if item.seq <= acked))
            event(log, "master.reported", logging.DEBUG, events=len(pending), acked=acked,
                  duration_s=round(time.monotonic() - started, 6))  # fmt: skip


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


async def _wait(flag: asyncio.Event, timeout_s: float) -> None:
    """Until ``flag`` is set or ``timeout_s`` passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await flag.wait()


def _within_bytes(pending: list[NodeEvent]) -> list[NodeEvent]:
    """The first of ``pending`` whose data fits in :data:`REPORT_BYTES` (one at least)."""
    total = 0
    for count, item in enumerate(pending):
        total += len(orjson.dumps(item.data)) + len(item.type) + 100
        if total > REPORT_BYTES and count:
            return pending[:count]
    return pending
