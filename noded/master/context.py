"""The master side's place in the daemon's life (``ganeti-noded --master``).

At start (the application's ``cleanup_ctx``): open the spool, queue ``node.start``, hand
the supervisor the queue for its calls' events, listen for ``call_master``.  Once the
node listens (:func:`start_reporting`, from the server: Register says the port): the
reporter registers and delivers.  At a clean stop, after the calls have ended (their
``call.finish`` queued): ``node.stop``, then up to :data:`STOP_DELIVERY_S` to deliver
what is spooled; what is left is sent at the next start.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from noded.calls.supervisor import Supervisor
from noded.config import NodedConfig
from noded.http.keys import CONFIG, IDENTITY, SUPERVISOR
from noded.identity import Identity
from noded.master.events import EventQueue
from noded.master.link import MasterLink
from noded.master.metrics import MasterMetrics
from noded.master.relay import RELAY_ENV, Relay, relay_address
from noded.master.reporter import Reporter
from noded.master.spool import SPOOL_FILE, Spool, spool_bound
from rpc_client.master_protocol import RegisterRequest
from rpc_client.tls import TLSConfig

NODE_START = "node.start"
NODE_STOP = "node.stop"
#: at a clean stop, the longest wait to deliver what is spooled
STOP_DELIVERY_S = 3.0
_WILDCARDS = ("", "0.0.0.0", "::")
_MIN_BUFFERED = 10000


@dataclass
class MasterSide:
    """What the master side holds while the daemon runs."""

    instance: str
    reporter: Reporter | None = None
    port: int = 0


MASTER_SIDE = web.AppKey("master_side", MasterSide)


def announce_relay(config: NodedConfig, identity: Identity) -> Identity:
    """Tell function processes (made from now on) where ``call_master`` is relayed;
    returns ``identity``."""
    if config.masters:
        os.environ[RELAY_ENV] = relay_address(config.state_dir, identity.uuid)
    return identity


def attach_master_side(app: web.Application) -> None:
    """With ``--master``: the master side starts and stops with ``app``."""
    if app[CONFIG].masters:
        app[MASTER_SIDE] = MasterSide(instance=uuid.uuid4().hex)
        app.cleanup_ctx.append(_master_side)


def start_reporting(app: web.Application, port: int) -> None:
    """The node listens on ``port``: register and deliver from now on."""
    side = app.get(MASTER_SIDE)
    if side is not None and side.reporter is not None:
        side.port = port
        side.reporter.start()


async def _master_side(app: web.Application) -> AsyncIterator[None]:
    config, identity, supervisor = app[CONFIG], app[IDENTITY], app[SUPERVISOR]
    side = app[MASTER_SIDE]
    max_bytes = spool_bound(config.state_dir, config.spool_max_bytes)
    spool = await asyncio.to_thread(
        Spool, config.state_dir / SPOOL_FILE, config.spool_max_events, max_bytes
    )
    metrics = MasterMetrics(supervisor.metrics.registry)
    # the buffer holds what comes while the spool is written: a stalled disk's bound
    events = EventQueue(spool, max(config.spool_max_events, _MIN_BUFFERED), metrics.dropped.inc)
    metrics.count_pending(lambda: spool.count + events.buffered)
    link = MasterLink(config.masters, _client_tls(config))

    def registration() -> RegisterRequest:
        return _registration(config, identity, side, supervisor.registry.names())

    def running() -> int:
        return len(supervisor.calls.running)

    side.reporter = Reporter(link, events, registration, running, metrics)
    events.emit(NODE_START, {"instance": side.instance, "pid": identity.pid,
                             "version": identity.version, "boot_id": identity.boot_id})  # fmt: skip
    supervisor.emit = events.emit
    relay = Relay(link, identity.uuid, lambda pid: _fnc_id_of(supervisor, pid))
    await relay.start(relay_address(config.state_dir, identity.uuid))
    try:
        yield
    finally:
        await relay.close()
        supervisor.emit = None
        events.emit(NODE_STOP, {"instance": side.instance, "pid": identity.pid})
        await side.reporter.stop(STOP_DELIVERY_S)
        await link.close()
        await events.close()


def _registration(
    config: NodedConfig, identity: Identity, side: MasterSide, functions: list[str]
) -> RegisterRequest:
    address = identity.name if config.bind in _WILDCARDS else config.bind
    return RegisterRequest(
        uuid=identity.uuid, name=identity.name, address=address, port=side.port or config.port,
        boot_id=identity.boot_id or "unknown", instance=side.instance, pid=identity.pid,
        version=identity.version, labels=config.labels, functions=tuple(functions),
    )  # fmt: skip


def _client_tls(config: NodedConfig) -> ssl.SSLContext | None:
    """The node's own certificate, when it serves TLS (masterd's TLS is to come)."""
    if not config.tls:
        return None
    assert config.tls_cert and config.tls_key and config.tls_ca
    return TLSConfig(cert=config.tls_cert, key=config.tls_key, ca=config.tls_ca).client_context()


def _fnc_id_of(supervisor: Supervisor, pid: int) -> str | None:
    """The running call whose function process is ``pid`` (a call_master's caller)."""
    for call in supervisor.calls.running.values():
        if call.pid == pid:
            return call.fnc_id
    return None
