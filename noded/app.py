"""``create_app``: the aiohttp application of ganeti-noded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from noded.config import NodedConfig
from noded.handlers import CONFIG, IDENTITY, REGISTRY, SUPERVISOR, dispatch, metrics_page
from noded.identity import Identity
from noded.metrics import Metrics
from noded.middleware import error_middleware
from noded.process import Spawner
from noded.registry import Registry
from noded.store import CallStore
from noded.supervisor import Supervisor


def create_app(
    config: NodedConfig,
    *,
    registry: Registry,
    identity: Identity,
    spawner: Spawner,
    metrics: Metrics | None = None,
) -> web.Application:
    """The application: every procedure on ``/{procedure}``, errors from one middleware."""
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    app[REGISTRY] = registry
    app[IDENTITY] = identity
    store = CallStore(config.state_dir)
    supervisor = Supervisor(config, registry, spawner, identity.pid, store, metrics or Metrics())
    supervisor.recover()
    app[SUPERVISOR] = supervisor
    app.router.add_get("/metrics", metrics_page, allow_head=False)
    app.router.add_route("*", "/{procedure:.*}", dispatch)
    app.cleanup_ctx.append(_expire_results)
    return app


async def _expire_results(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[SUPERVISOR].expire_forever(), name="expire-results")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
