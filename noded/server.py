"""The daemon's lifecycle: startup, serve until a signal, shut down in a fixed order.

Shutdown order: stop taking calls (503 ShuttingDown, the port stays open so clients are
told) -> SIGTERM every function process group -> wait up to the grace period -> SIGKILL
what is left -> reap -> close the HTTP server -> exit 0.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

import uvloop
from aiohttp import web

from noded.calls.audit import AuditLog
from noded.config import NodedConfig
from noded.http.app import create_app
from noded.http.guard import Guard
from noded.http.keys import DESCRIPTORS, GUARD, SUPERVISOR
from noded.http.middleware import error_response
from noded.identity import load_identity
from noded.master.context import announce_relay, attach_master_side, start_reporting
from noded.metrics import Metrics
from noded.policy.rules import Policy, PolicyError, load_policy, plain_http_warning
from noded.process import helpers, tree
from noded.process.function import ProcessLimits
from noded.registry import Registry
from noded.reload import FunctionReloader, Reloaded, import_functions, make_spawner
from noded.state_lock import StateLock, hold_state_directory
from rpc_client import systemd, tls
from rpc_client.http_runner import ContractRunner
from rpc_client.logs import event, reopen_log_files
from rpc_client.serving.descriptors import (
    SPARE_DESCRIPTORS,
    STARTUP_DESCRIPTORS,
    check_budget_can_be_met,
    open_descriptors,
    raise_open_files_limit,
)
from rpc_client.serving.listener import PlainSite, check_port_free
from rpc_client.serving.tls_site import TLSSite

#: allocations between collections of the young generation (Python's default: 700)
_GC_YOUNG_OBJECTS = 5000

log = logging.getLogger("noded.server")

_HTTP_CLOSE_TIMEOUT_S = 2.0
#: the first stops the daemon in order, a second forces its exit (whatever the phase)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: connections waiting to be accepted: a master fanning out hundreds of calls at once
#: must not overflow it (aiohttp's 128 did: the excess SYNs were retried after 1 and 3 s)
_LISTEN_BACKLOG = 1024


class Server:
    """One ganeti-noded: ``run()`` returns the exit status."""

    def __init__(self, config: NodedConfig) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self._runner: ContractRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._ssl: ssl.SSLContext | None = None
        self._reloading: set[asyncio.Task[Reloaded]] = set()
        #: set by SIGHUP; the loop does the reload (:meth:`_reload_when_asked`)
        self._reload_asked = asyncio.Event()
        self._reload_loop: asyncio.Task[None] | None = None
        self._state_lock: StateLock | None = None
        self._ready = False  # daemon.ready was logged
        self._trees: tree.CallTrees | None = None

    def run(self) -> int:
        try:
            uvloop.run(self.serve())
        finally:
            self._force_exit_on_late_stop_signals()
        return 0

    def _force_exit_on_late_stop_signals(self) -> None:
        """Once the loop is gone, a stop signal held since the stop forces the exit as
        during the stop (143).  Then they are held again to the end: the interpreter's
        end puts back the default handlers, and one then would kill the daemon by the
        signal; held, it exits 0, its stop done."""
        for sig in _STOP_SIGNALS:
            signal.signal(sig, lambda number, _frame: self._force_exit(number))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a held one: now
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)

    async def serve(self) -> None:
        # First of all: a stop signal during start-up is then a stop once started, not
        # asyncio's cancellation of start-up half-way (a traceback, or a signal lost).
        self._install_signal_handlers()
        try:
            await self.startup()
        except BaseException:
            await self.shutdown()  # what was started before the failure
            raise
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        self._state_lock = hold_state_directory(self.config.state_dir)  # before any use
        await check_port_free(self.config.bind, self.config.port)  # before anything starts
        raise_open_files_limit()
        config = self.config
        check_descriptors_before_start(config)
        registry = import_functions(config.functions, config.functions_path)
        limits = process_limits(config)
        metrics = Metrics()
        policy = load_startup_policy(config.policy, registry, tls=config.tls)
        say_if_refusing_all(policy, config)
        audit = open_audit_log(config, metrics)  # locked: before anything is started
        self._trees = tree.choose(config.cgroup_root, os.getpid())
        self._reloader = FunctionReloader(config, limits, metrics, self._trees)
        # before a spawner copies the environment: where call_master is relayed
        identity = announce_relay(config, load_identity(config.state_dir, config.name))
        app = create_app(
            config,
            registry=registry,
            identity=identity,
            spawner=await make_spawner(config, limits, metrics, self._trees),
            metrics=metrics,
            trees=self._trees,
            policy=policy,
            audit=audit,
            reload=self._reloader.reload,
        )
        self._reloader.supervisor = app[SUPERVISOR]
        attach_master_side(app)
        self._runner = _runner(app, config)
        await self._runner.setup()
        await self._listen(config, metrics)
        start_reporting(app, self._runner.addresses[0][1])
        # What start-up made (imports, the app, the registry) lives as long as the
        # daemon: out of the collector's way, which otherwise scans it again and again
        # under load (doc/performance.md, session 11).
        gc.freeze()
        # A call allocates a few hundred objects, nearly all freed by reference counting
        # within it.  Collected every 700 allocations, the young generation held those of
        # the calls in flight, which were scanned, promoted and scanned again: 110 us of
        # CPU a call at 32 callers, 33 us with this (pauses of a few ms, rarely).
        gc.set_threshold(_GC_YOUNG_OBJECTS, 10, 10)
        event(
            log,
            "daemon.ready",
            pid=os.getpid(),
            addresses=self._runner.addresses,
            tls=config.tls,
            tls_ca=str(config.tls_ca) if config.tls_ca else None,
            functions=registry.names(),
        )
        self._ready = True
        # the port is open: only now may systemd start what depends on this daemon
        systemd.notify(
            "READY=1", f"MAINPID={os.getpid()}", f"STATUS=serving on {config.bind}:{config.port}"
        )
        self._start_background()

    def _start_background(self) -> None:
        """The systemd watchdog's pings, and the task that does what SIGHUP asks."""
        interval = systemd.watchdog_interval_s()
        if interval is not None:
            self._watchdog = asyncio.create_task(systemd.ping_watchdog_forever(interval))
        self._reload_loop = asyncio.create_task(self._reload_when_asked(), name="SIGHUP reloads")

    async def _listen(self, config: NodedConfig, metrics: Metrics) -> None:
        """Open the port; then, with all the daemon holds at rest open, refuse to go on
        if the descriptor budget cannot be met (every request would be 503 Busy)."""
        await self._site(config, metrics).start()
        check_budget_can_be_met(config.descriptor_reserve, open_descriptors())

    def _site(self, config: NodedConfig, metrics: Metrics) -> web.TCPSite:
        """The listening site, which accepts only the connections it has descriptors for;
        with TLS, one that logs refused handshakes."""
        assert self._runner is not None
        budget = self._runner.app[DESCRIPTORS]
        if not config.tls:
            return PlainSite(self._runner, config.bind, config.port, reuse_address=True,
                             backlog=_LISTEN_BACKLOG, budget=budget)  # fmt: skip
        self._ssl = tls.server_context(*self._tls_files())
        return TLSSite(
            self._runner, config.bind, config.port, reuse_address=True, ssl_context=self._ssl,
            backlog=_LISTEN_BACKLOG, handshake_timeout_s=config.idle_timeout_s, metrics=metrics,
            budget=budget,
        )  # fmt: skip

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_reload_signal(self) -> None:
        """SIGHUP: ask for a reload, which the loop does (signals that come meanwhile ask
        for one more, not one each)."""
        self._reload_asked.set()

    async def _reload_when_asked(self) -> None:
        """One reload at a time, to its end: SIGHUPs that come meanwhile set the flag
        again, which asks for one more reload after it, whatever their number."""
        while True:
            await self._reload_asked.wait()
            self._reload_asked.clear()
            functions = self._reload()
            if functions is not None:
                await asyncio.wait([functions])  # its outcome is logged by the reloader

    def _reload(self) -> asyncio.Task[Reloaded] | None:
        """Reopen the log files and the audit log, load the TLS files and the policy
        again, and import the functions again (in the background): each step on its own,
        so that one that fails (logged) stops none of the others."""
        event(log, "daemon.reload", log_file=str(self.config.log_file or "stderr"))
        _step("log_files", reopen_log_files)
        if self._ssl is not None:
            _step("tls", functools.partial(self._reload_tls, self._ssl))
        if self._runner is None:
            return None
        guard = self._runner.app[GUARD]
        if guard.audit is not None:
            _step("audit_log", guard.audit.reopen)
        if self.config.policy is not None:
            registry = self._runner.app[SUPERVISOR].registry
            policy = self.config.policy
            _step("policy", lambda: reload_policy(guard, policy, registry, tls=self.config.tls))
        task = asyncio.create_task(self._reloader.reload(), name="reload functions")
        self._reloading.add(task)
        task.add_done_callback(self._reloading.discard)
        return task

    def _reload_tls(self, context: ssl.SSLContext) -> None:
        """New connections get the new certificate; running calls are not touched.  Files
        that do not load whole (a new certificate, its key not yet in place) are refused
        and the certificate in use stays."""
        try:
            tls.load_server_material(context, *self._tls_files())
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            event(log, "tls.reload_failed", logging.ERROR, error=str(exc))
        else:
            event(log, "tls.reloaded", cert=str(self.config.tls_cert))

    def _tls_files(self) -> tuple[Path, Path, Path]:
        config = self.config
        assert config.tls_cert and config.tls_key and config.tls_ca
        return config.tls_cert, config.tls_key, config.tls_ca

    def _on_stop_signal(self, sig: int) -> None:
        """The first SIGTERM or SIGINT stops the daemon in order; a second, while it
        stops, ends it now: every call's processes are killed first."""
        event(log, "daemon.signal", signal=signal.Signals(sig).name)
        if self._stop.is_set():
            self._force_exit(sig)
        self._stop.set()

    def _force_exit(self, sig: int) -> None:
        """SIGKILL every call's process group and tree, then exit at once with 128 +
        ``sig`` (as a shell reports a death by that signal): the journal's recovery at
        the next start deals with the calls' records.  The importers and fork servers
        (one busy importing reads no socket, so it would not leave) are killed too; the
        spare processes leave on their own as their pipes close."""
        killed = self._runner.app[SUPERVISOR].kill_all() if self._runner is not None else 0
        if self._trees is not None:
            self._trees.close()  # the frozen members of a process tree are killed now
        killed_helpers = helpers.kill_all()
        event(log, "daemon.forced_exit", logging.ERROR, signal=signal.Signals(sig).name,
              killed_groups=killed, killed_helpers=killed_helpers, status=128 + sig)  # fmt: skip
        logging.shutdown()
        os._exit(128 + sig)

    async def shutdown(self) -> None:
        if self._runner is None:
            return
        ready = self._ready  # a start that failed is no stop: its error is the last line
        if ready:
            event(log, "daemon.stopping")
        if self._reload_loop is not None:
            self._reload_loop.cancel()
        for task in self._reloading:
            task.cancel()
        self._reloader.stop()  # a ReloadFunctions in flight is answered, not cut off
        systemd.notify("STOPPING=1", "STATUS=stopping: terminating function processes")
        await self._runner.app[SUPERVISOR].shutdown()
        if self._trees is not None:
            self._trees.close()
        await self._runner.cleanup()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._state_lock is not None:
            self._state_lock.release()
        if ready:
            event(log, "daemon.stopped")
        # held until run() has its own handlers: the loop's go with it, and a stop signal
        # then would kill the daemon by the signal (exit -15) instead of forcing the exit
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


def _step(name: str, run: Callable[[], None]) -> None:
    """One step of a reload; if it raises, log which and why, and go on."""
    try:
        run()
    except Exception as exc:
        event(log, "daemon.reload_failed", logging.ERROR, step=name, error=repr(exc))


def load_startup_policy(path: Path | None, registry: Registry, *, tls: bool) -> Policy | None:
    """The policy file, checked (a daemon whose policy cannot be read does not start);
    its warnings logged, one that would refuse every request of a daemon without TLS
    among them."""
    if path is None:
        return None
    policy = load_policy(path, registry)
    refuses_all = None if tls else plain_http_warning(policy)
    if refuses_all is not None:
        policy.warnings.append(refuses_all)
    for warning in policy.warnings:
        event(log, "policy.warning", logging.WARNING, policy=str(path), warning=warning)
    event(log, "policy.loaded", policy=str(path), rules=len(policy.rules), sha256=policy.sha256)
    return policy


def process_limits(config: NodedConfig) -> ProcessLimits:
    """What bounds each call's process: its result frame, its stderr tail, its kill grace."""
    return ProcessLimits(
        max_frame_bytes=config.max_result_bytes,
        stderr_tail_bytes=config.stderr_tail_bytes,
        kill_grace_s=config.kill_grace_s,
    )


def open_audit_log(config: NodedConfig, metrics: Metrics) -> AuditLog | None:
    if config.audit_log is None:
        return None
    return AuditLog(config.audit_log, config.state_dir, metrics, record_args=config.audit_args)


def say_if_refusing_all(policy: Policy | None, config: NodedConfig) -> None:
    """On stderr too (the operator starting the daemon by hand, or systemd's journal), a
    policy that refuses every request of this daemon without TLS; not twice when the
    log is text on stderr already."""
    refuses_all = None if policy is None or config.tls else plain_http_warning(policy)
    if refuses_all is not None and (config.log_file is not None or config.log_format != "text"):
        print(f"ganeti-noded: warning: {refuses_all}", file=sys.stderr, flush=True)


def reload_policy(guard: Guard, path: Path, registry: Registry, *, tls: bool) -> None:
    """Read the policy again; if it cannot be used, the one in force stays (a reload
    never opens the door) and the log and the audit log say why."""
    try:
        policy = load_startup_policy(path, registry, tls=tls)
    except PolicyError as exc:
        event(log, "policy.reload_failed", logging.ERROR, policy=str(path), error=str(exc))
        outcome, reason = "failed", f"{exc}; the policy in force stays"
    else:
        guard.policy = policy
        outcome, reason = "ok", f"{path} sha256:{policy.sha256 if policy else ''}"
    if guard.audit is not None:
        guard.audit.policy_reloaded(outcome, reason)


def check_descriptors_before_start(config: NodedConfig) -> None:
    """A budget no limit could hold is refused before anything starts, on an estimate of
    what start-up opens; the exact check, with all the daemon holds at rest, comes once
    it has started (before it says it is ready)."""
    at_rest = STARTUP_DESCRIPTORS + SPARE_DESCRIPTORS * config.spare_processes
    check_budget_can_be_met(config.descriptor_reserve, open_descriptors() + at_rest)


def _runner(app: web.Application, config: NodedConfig) -> ContractRunner:
    """The runner: malformed HTTP answered with the contract's body, idle connections
    closed after ``idle_timeout_s``."""
    return ContractRunner(app, error_response=error_response, access_log=None,
                          keepalive_timeout=config.idle_timeout_s,
                          shutdown_timeout=_HTTP_CLOSE_TIMEOUT_S)  # fmt: skip
