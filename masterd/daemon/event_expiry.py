"""Events expire: those stored longer ago than ``--event-ttl`` (default 7 days) are
deleted in the background, at most :data:`BATCH` a transaction, so that the events table
does not grow without end (at one event a node a minute, 50,000 nodes store 72 million
a day) and no delete holds the store for long.

A WaitForEvents from a position whose events expired reads on from the oldest kept; ids
never go back (both stores never reuse one). Every masterd on a shared store expires
(deleting what another deleted already deletes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from masterd.daemon.keys import CONFIG, STORE
from masterd.store.base import Store
from rpc_client.errors import RemoteError
from rpc_client.logs import event

log = logging.getLogger("masterd.events")

#: events deleted in one transaction, at most
BATCH = 10_000
_EVERY_MIN_S, _EVERY_MAX_S = 0.2, 600.0


async def expire_once(store: Store, ttl_s: float) -> int:
    """Every event stored more than ``ttl_s`` ago, in batches; how many."""
    before, total = time.time() - ttl_s, 0
    while True:
        deleted = await store.expire_events(before, BATCH)
        total += deleted
        if deleted < BATCH:
            return total


async def expire_forever(store: Store, ttl_s: float) -> None:
    interval_s = max(_EVERY_MIN_S, min(_EVERY_MAX_S, ttl_s / 4))
    while True:
        try:
            expired = await expire_once(store, ttl_s)
            if expired:
                event(log, "events.expired", events=expired, event_ttl_s=ttl_s)
        except RemoteError as exc:  # the store is away or full: the next round tries again
            event(log, "events.expire_failed", logging.WARNING, error=str(exc))
        await asyncio.sleep(interval_s)


async def expire_events(app: web.Application) -> AsyncIterator[None]:
    """The application's cleanup context: expiry runs while it serves."""
    task = asyncio.create_task(
        expire_forever(app[STORE], app[CONFIG].event_ttl_s), name="expire-events"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
