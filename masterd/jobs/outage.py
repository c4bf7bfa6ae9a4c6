"""A job's writes through a store outage: retried, never dropped, logged once.

Every record a job's guarantees rest on (a node asked, before its StartFunction is sent;
a node's end; the job's state) goes through :meth:`StorePatience.write`.  When the store
answers :class:`~rpc_client.errors.StoreUnavailable` (PostgreSQL restarted, failing over,
unreachable; a disk that hangs) or :class:`~rpc_client.errors.InsufficientStorage` (a
full disk), the write is tried again after a backoff that doubles from
:data:`FIRST_RETRY_S` to :data:`MAX_RETRY_S`, for as long as the outage lasts: the job
pauses where it is (no node is started while its start cannot be recorded, and a node
that ended keeps its result in memory until it is stored) and goes on once the store is
back.  Each attempt is bounded by the store's own timeout (10 s); the pause ends when a
write succeeds, or when masterd stops (its runs are cancelled, and the next start goes on
from the store).  Every store write of a job is safe to repeat.

The log has ``job.paused`` once when a job's first write fails and ``job.unpaused`` (with
how long it lasted and how many attempts failed) when one succeeds again: once per
outage, not per attempt.

:class:`~masterd.store.jobs.JobNotHeld` (another master may own the job now) is not an
outage: it is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from masterd.store.jobs import JobNotHeld
from rpc_client.errors import InsufficientStorage, StoreUnavailable
from rpc_client.logs import event

log = logging.getLogger("masterd.jobs")

T = TypeVar("T")

#: the first wait after a failed write, and the longest (it doubles in between)
FIRST_RETRY_S = 0.1
MAX_RETRY_S = 1.0


class StorePatience:
    """The writes of one job, retried through store outages."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        #: when the current outage began (monotonic), None while the store answers
        self._since: float | None = None
        self._failures = 0

    @property
    def paused(self) -> bool:
        return self._since is not None

    async def write(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again and again until the store takes it."""
        delay_s = FIRST_RETRY_S
        while True:
            try:
                result = await attempt()
            except JobNotHeld:
                raise
            except (StoreUnavailable, InsufficientStorage) as exc:
                self._failed(what, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(MAX_RETRY_S, delay_s * 2)
                continue
            self._answered()
            return result

    def _failed(self, what: str, exc: StoreUnavailable | InsufficientStorage) -> None:
        self._failures += 1
        if self._since is None:
            self._since = time.monotonic()
            event(log, "job.paused", logging.WARNING, job_id=self.job_id, write=what,
                  error=exc.message, retry_max_s=MAX_RETRY_S)  # fmt: skip

    def _answered(self) -> None:
        if self._since is None:
            return
        paused_s = time.monotonic() - self._since
        event(log, "job.unpaused", job_id=self.job_id, paused_s=round(paused_s, 3),
              failed_attempts=self._failures)  # fmt: skip
        self._since, self._failures = None, 0
