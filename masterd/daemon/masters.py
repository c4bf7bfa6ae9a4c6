"""Several masters on one store: this masterd's row renewed, Register's ``masters`` from
the live rows, and what other masters stored brought into this one's memory.

At least every third of ``--lease-s`` (and as often as heartbeats are flushed) a
masterd renews its row in ``instances`` (the store judges by its own clock) and reads
the rows renewed within ``--lease-s``: those are Register's ``masters``, so nodes learn
of a new master at their next Register and drop one that stopped renewing.  With a
shared store (PostgreSQL) it also reads the nodes others registered and the heartbeats
they flushed (ListNodes' ``alive`` is "any master heard from it"), and is woken by the
events others stored.  With SQLite (one masterd) the list is itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from masterd.daemon.keys import CONFIG, EVENTS, INSTANCE, JOBS, MASTERS, REGISTRY, STORE
from rpc_client.errors import RemoteError
from rpc_client.logs import event

log = logging.getLogger("masterd.masters")


async def keep_masters(app: web.Application) -> AsyncIterator[None]:
    """The application's ``cleanup_ctx``: renew and look around while it runs."""
    store = app[STORE]
    if store.shared:
        store.subscribe(app[EVENTS].advanced)
        store.subscribe_jobs(app[JOBS].stored_elsewhere)
    task = asyncio.create_task(_renew_forever(app), name="renew-instance")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _renew_forever(app: web.Application) -> None:
    lease_s = app[CONFIG].lease_s
    interval_s = min(lease_s / 3, app[CONFIG].flush_interval_s)
    while True:
        await asyncio.sleep(interval_s)
        try:
            await renew(app, lease_s)
        except RemoteError as exc:  # the store is away: the next round tries again
            event(log, "store.renew_failed", logging.WARNING, error=exc.message)


async def renew(app: web.Application, lease_s: float) -> None:
    """One round: renew this masterd's row, read the live ones, and (shared store) the
    nodes and the jobs of masters that lapsed."""
    store = app[STORE]
    await store.renew_instance(app[INSTANCE])
    live = await store.live_instances(lease_s)
    if live:  # never empty: this one's row was just renewed
        app[MASTERS][:] = live
    if store.shared:
        await app[REGISTRY].refresh()
        await app[JOBS].resume()  # the jobs of masters whose rows lapsed
