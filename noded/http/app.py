"""``create_app``: the aiohttp application of ganeti-noded.

Building it touches nothing: the journal is replayed (and a crashed daemon's leftover
process groups killed) when the application starts, in its ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from noded.calls.audit import AuditLog
from noded.calls.journal import CallJournal
from noded.calls.recorder import CallRecorder
from noded.calls.supervisor import Supervisor
from noded.config import NodedConfig
from noded.http.guard import Guard
from noded.http.handlers import dispatch, metrics_page, openapi_page
from noded.http.keys import CONFIG, DESCRIPTORS, GUARD, IDENTITY, RELOAD, SUPERVISOR, Reload
from noded.http.middleware import error_middleware
from noded.identity import Identity
from noded.metrics import Metrics
from noded.policy.rules import Policy
from noded.process.spawners import Spawner
from noded.process.tree import CallTrees
from noded.registry import Registry
from rpc_client.errors import UnknownProcedure
from rpc_client.serving.descriptors import DescriptorBudget


def create_app(
    config: NodedConfig,
    *,
    registry: Registry,
    identity: Identity,
    spawner: Spawner,
    metrics: Metrics | None = None,
    trees: CallTrees | None = None,
    policy: Policy | None = None,
    audit: AuditLog | None = None,
    reload: Reload | None = None,
) -> web.Application:
    """The application: every procedure on ``/{procedure}``, errors from one middleware.

    ``policy``: who may do what (None: everyone everything, unless the config has
    --tls-allowed-clients, a policy of one rule); ``audit``: the audit log, if any."""
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    app[RELOAD] = reload or _cannot_reload
    app[IDENTITY] = identity
    metrics = metrics or Metrics()
    if policy is None and config.tls_allowed_clients:
        policy = Policy.allow_clients(config.tls_allowed_clients)
    app[GUARD] = Guard(policy, audit, metrics)
    app[DESCRIPTORS] = DescriptorBudget(config.descriptor_reserve, metrics)
    journal = CallJournal(config.state_dir, slack_lines=config.journal_slack_lines)
    recorder = CallRecorder(journal, audit, metrics, config.state_dir)
    app[SUPERVISOR] = Supervisor(
        config, registry, spawner, identity.pid, recorder, metrics, trees or CallTrees(),
        per_owner=policy is not None,
    )  # fmt: skip
    app.router.add_get("/metrics", metrics_page, allow_head=False)
    app.router.add_get("/openapi.json", openapi_page, allow_head=False)
    app.router.add_route("*", "/{procedure:.*}", dispatch)
    app.cleanup_ctx.append(_recover_then_expire_results)
    return app


async def _cannot_reload() -> Any:
    raise UnknownProcedure("this application was built without a way to reload its functions")


async def _recover_then_expire_results(app: web.Application) -> AsyncIterator[None]:
    """At start, before the first request: take over from the daemon before.  Then, while
    the application runs, drop results past their time."""
    supervisor = app[SUPERVISOR]
    supervisor.recover()
    task = asyncio.create_task(supervisor.expire_forever(), name="expire-results")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
