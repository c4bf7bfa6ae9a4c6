"""``create_app``: the aiohttp application of ganeti-masterd.

Building it touches nothing; the store is opened by the server before, and the
heartbeats' flush runs while the application does, in its ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from masterd.commands import Commands
from masterd.daemon.commands import CommandRunner
from masterd.daemon.config import MasterdConfig
from masterd.daemon.event_expiry import expire_events
from masterd.daemon.events import EventLog
from masterd.daemon.handlers import dispatch, metrics_page, openapi_page
from masterd.daemon.keys import (
    CALLER_OF,
    COMMAND_RUNNER,
    COMMANDS,
    CONFIG,
    EVENTS,
    INSTANCE,
    JOBS,
    MASTERS,
    METRICS,
    REGISTRY,
    STORE,
    CallerOf,
)
from masterd.daemon.metrics import MasterdMetrics
from masterd.daemon.middleware import error_middleware
from masterd.daemon.registry import NodeRegistry
from masterd.daemon.roles import caller_of as roles_caller_of
from masterd.jobs.service import Jobs
from masterd.node import Node
from masterd.store.base import Store
from rpc_client.tls import TLSConfig


def create_app(
    config: MasterdConfig,
    *,
    store: Store,
    instance: str,
    listed: Iterable[Node] = (),
    metrics: MasterdMetrics | None = None,
    caller_of: CallerOf = roles_caller_of,
    commands: Commands | None = None,
) -> web.Application:
    """The application: every procedure on ``/{procedure}``, errors from one middleware.

    ``listed``: the nodes of ``--nodes FILE``; ``commands``: those of ``--commands``
    (already imported); ``caller_of``: the identity of a request's client certificate
    (None without TLS)."""
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=[error_middleware])
    metrics = metrics or MasterdMetrics()
    events = EventLog(store, metrics, max_report_events=config.max_report_events,
                      node_events_per_s=config.node_events_per_s,
                      max_wait_s=config.max_wait_s)  # fmt: skip
    registry = NodeRegistry(store, config.heartbeat_s, listed, on_stored=events.stored)
    metrics.count_nodes(registry.counts)
    app[CONFIG], app[STORE], app[INSTANCE], app[METRICS] = config, store, instance, metrics
    app[EVENTS], app[REGISTRY], app[CALLER_OF] = events, registry, caller_of
    app[MASTERS] = [config.advertised]
    app[COMMANDS] = commands or Commands()
    app[COMMAND_RUNNER] = CommandRunner(config.command_threads, metrics.commands)
    app[JOBS] = Jobs(store, instance, known_nodes=registry.fresh_listing,
                     job_ttl_s=config.job_ttl_s, max_result_bytes=config.max_job_result_bytes,
                     max_wait_s=config.max_wait_s,
                     functions_of=registry.functions_of, node_tls=node_tls(config))  # fmt: skip
    app.router.add_get("/metrics", metrics_page, allow_head=False)
    app.router.add_get("/openapi.json", openapi_page, allow_head=False)
    app.router.add_route("*", "/{procedure:.*}", dispatch)
    app.cleanup_ctx.append(_load_then_flush)
    app.cleanup_ctx.append(_run_jobs)
    app.cleanup_ctx.append(expire_events)
    app.on_shutdown.append(_answer_waiters)
    return app


def node_tls(config: MasterdConfig) -> TLSConfig | None:
    """With TLS, masterd calls nodes over mutual TLS with its own certificate."""
    if config.tls_cert is None or config.tls_key is None or config.tls_ca is None:
        return None
    return TLSConfig(cert=config.tls_cert, key=config.tls_key, ca=config.tls_ca)


async def _answer_waiters(app: web.Application) -> None:
    """Before the requests in flight are waited for: long-polls answer at once."""
    app[EVENTS].close()
    app[JOBS].close_waiters()


async def _load_then_flush(app: web.Application) -> AsyncIterator[None]:
    """Before the first request: the registry and the newest event id from the store.
    While the application runs: heartbeats to the store; a last flush at the end."""
    registry = app[REGISTRY]
    await registry.load()
    await app[EVENTS].load()
    task = asyncio.create_task(
        registry.flush_forever(app[CONFIG].flush_interval_s), name="flush-heartbeats"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await registry.flush()


async def _run_jobs(app: web.Application) -> AsyncIterator[None]:
    """Once the registry is read: the jobs an earlier masterd left go on, and old jobs
    expire while the application runs; at the end the runs stop where they are (the
    next start goes on from the store)."""
    jobs = app[JOBS]
    await jobs.resume()
    task = asyncio.create_task(jobs.expire_forever(), name="expire-jobs")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await jobs.stop()
