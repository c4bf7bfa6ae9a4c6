"""ganeti-masterd's lifecycle: startup, serve until a signal, shut down in a fixed order.

Startup: take the store (its lock first, then the migrations) -> record this instance ->
the application (the registry read from the store) -> listen -> READY=1.
Shutdown: stop listening and finish the requests in flight (bounded) -> flush the
heartbeats -> close the store (its lock goes) -> exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import time
import uuid

import uvloop
from aiohttp import web

from masterd.commands import load_commands
from masterd.daemon.app import create_app
from masterd.daemon.config import MasterdConfig
from masterd.daemon.keys import MASTERS, METRICS
from masterd.daemon.masters import keep_masters
from masterd.daemon.metrics import MasterdMetrics
from masterd.daemon.middleware import error_response
from masterd.node import Node, load_nodes
from masterd.store import store_for
from masterd.store.base import Store
from rpc_client import systemd, tls
from rpc_client.http_runner import ContractRunner
from rpc_client.logs import event, reopen_log_files
from rpc_client.serving.descriptors import (
    DescriptorBudget,
    check_budget_can_be_met,
    open_descriptors,
    raise_open_files_limit,
)
from rpc_client.serving.listener import PlainSite, check_port_free
from rpc_client.serving.tls_site import TLSSite

log = logging.getLogger("masterd.server")

_HTTP_CLOSE_TIMEOUT_S = 2.0
#: allocations between collections of the young generation (CPython's default: 700)
_GC_YOUNG_OBJECTS = 5000
_LISTEN_BACKLOG = 1024


class Server:
    """One ganeti-masterd: ``run()`` returns the exit status."""

    def __init__(self, config: MasterdConfig) -> None:
        self.config = config
        self.instance = uuid.uuid4().hex
        self._stop = asyncio.Event()
        self._store: Store | None = None
        self._runner: web.AppRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._serving = False  # daemon.ready was logged

    def run(self) -> int:
        uvloop.run(self.serve())
        return 0

    async def serve(self) -> None:
        self._install_signal_handlers()  # first: a stop during start-up is a stop
        try:
            await self.startup()
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        config = self.config
        await check_port_free(config.bind, config.port)  # before the store is made
        raise_open_files_limit()
        listed: list[Node] = load_nodes(config.nodes) if config.nodes else []
        commands = load_commands(config.commands, config.commands_path)
        self._store = store = store_for(config.store_url, lease_s=config.lease_s)
        await store.open()
        app = create_app(config, store=store, instance=self.instance, listed=listed,
                         commands=commands)  # fmt: skip
        app.cleanup_ctx.append(keep_masters)  # renew this masterd's row while it serves
        self._runner = ContractRunner(app, error_response=error_response, access_log=None,
                                      shutdown_timeout=_HTTP_CLOSE_TIMEOUT_S)  # fmt: skip
        await self._runner.setup()
        await self._site(app[METRICS]).start()
        check_budget_can_be_met(config.descriptor_reserve, open_descriptors())
        advertised = self._advertised(config)
        app[MASTERS][:] = [advertised]
        await store.add_instance(self.instance, advertised, os.getpid(), time.time())
        self._serving = True
        _tune_collector()
        event(log, "daemon.ready", pid=os.getpid(), instance=self.instance,
              addresses=self._runner.addresses, store=store.url, nodes_listed=len(listed),
              heartbeat_s=config.heartbeat_s)  # fmt: skip
        systemd.notify(
            "READY=1", f"MAINPID={os.getpid()}", f"STATUS=serving on {config.bind}:{config.port}"
        )
        interval = systemd.watchdog_interval_s()
        if interval is not None:
            self._watchdog = asyncio.create_task(systemd.ping_watchdog_forever(interval))

    def _site(self, metrics: MasterdMetrics) -> web.TCPSite:
        """The listening site, as ganeti-noded's: it accepts only the connections it has
        descriptors for (the rest: 503 Busy, never a reset); with TLS, it logs a refused
        handshake (tls.handshake_failed)."""
        config, runner = self.config, self._runner
        assert runner is not None
        budget = DescriptorBudget(config.descriptor_reserve, metrics)
        context = self._ssl()
        if context is None:
            return PlainSite(runner, config.bind, config.port, reuse_address=True,
                             backlog=_LISTEN_BACKLOG, budget=budget)  # fmt: skip
        return TLSSite(
            runner, config.bind, config.port, reuse_address=True, ssl_context=context,
            backlog=_LISTEN_BACKLOG, handshake_timeout_s=config.handshake_timeout_s,
            metrics=metrics, budget=budget,
        )  # fmt: skip

    def _ssl(self) -> ssl.SSLContext | None:
        """With --tls-*: TLS 1.2+, a client certificate signed by the CA required."""
        config = self.config
        if config.tls_cert is None or config.tls_key is None or config.tls_ca is None:
            return None
        try:
            return tls.server_context(config.tls_cert, config.tls_key, config.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the TLS certificate, key or CA: {exc}") from exc

    def _advertised(self, config: MasterdConfig) -> str:
        """--advertise, else the address and the port it listens on (--port 0: the one
        it got)."""
        if config.advertise is not None or config.port != 0 or self._runner is None:
            return config.advertised
        host, port = self._runner.addresses[0][:2]
        return f"{host}:{port}"

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, sig: int) -> None:
        event(log, "daemon.signal", signal=signal.Signals(sig).name)
        self._stop.set()

    def _on_reload_signal(self) -> None:
        reopen_log_files()
        event(log, "daemon.reload", log_file=str(self.config.log_file or "stderr"))

    async def shutdown(self) -> None:
        # a start that failed is no stop: its error is the last line, not daemon.stopped
        serving = self._serving
        if serving:
            event(log, "daemon.stopping")
            systemd.notify("STOPPING=1", "STATUS=stopping")
        if self._runner is not None:
            await self._runner.cleanup()  # stops listening, then the last flush
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._store is not None:
            await self._store.close()
        if serving:
            event(log, "daemon.stopped")


def _tune_collector() -> None:
    """As ganeti-noded does (noded/server.py): what start-up made lives as long as the
    daemon, out of the collector's way; and the young generation is collected every
    5,000 allocations rather than 700, so that the objects of a job's calls in flight (a
    thousand tasks, connections and futures, nearly all freed by reference counting) are
    not scanned, promoted and scanned again (about 0.1 ms of CPU a job node in the
    1,000-node bench, doc/performance.md)."""
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_OBJECTS, 10, 10)
