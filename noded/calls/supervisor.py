"""The supervisor: starts calls, waits for them, stops them, and drains on shutdown.

Handlers talk to this class only; it uses the registry to check arguments, a spawner to
make processes, and the call table to keep results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from noded.calls.call_events import Emit, finish_event
from noded.calls.listener import CallHandOn
from noded.calls.listing import listing_entry
from noded.calls.outcomes import call_result
from noded.calls.output_keeper import OutputKeeper, retained_results_bound
from noded.calls.recorder import CallRecorder
from noded.calls.recovery import kill_leftovers
from noded.calls.spawner_handover import BUSY_RETRY_AFTER_S, Spawners
from noded.calls.starts import Start, encode_start
from noded.calls.table import (
    AbortReason,
    CallTable,
    FunctionCall,
    args_digest,
    request_key,
)
from noded.config import NodedConfig
from noded.metrics import Metrics
from noded.policy.rules import Caller
from noded.process.bounds import TreeBounds
from noded.process.function import FunctionProcess, Outcome
from noded.process.process_set import ProcessSet
from noded.process.spawners import Spawner
from noded.process.tree import CallTrees, CgroupTree
from noded.registry import FunctionSpec, Registry
from rpc_client.errors import (
    NodeBusy,
    NodeShuttingDown,
    UnknownFunction,
)
from rpc_client.logs import event
from rpc_client.protocol import CallState, FncId, StartFunctionRequest

log = logging.getLogger("noded.calls")


class Supervisor:
    """Every call of this daemon, from start to expiry."""

    def __init__(
        self,
        config: NodedConfig,
        registry: Registry,
        spawner: Spawner,
        daemon_pid: int,
        recorder: CallRecorder,
        metrics: Metrics,
        trees: CallTrees,
        *,
        per_owner: bool = False,
    ) -> None:
        self._config = config
        self._registry = registry
        self.spawners = Spawners(spawner, metrics)
        self._daemon_pid = daemon_pid
        self.recorder = recorder
        self._trees = trees
        #: calls have owners (a policy is in force): request_ids are per owner
        self._per_owner = per_owner
        self.metrics = metrics
        self._outputs = OutputKeeper(
            config.state_dir, config.max_output_bytes, metrics,
            total_bytes=config.max_retained_output_bytes,
        )  # fmt: skip
        self.calls = CallTable(
            daemon_pid=daemon_pid,
            result_ttl_s=config.result_ttl_s,
            max_retained=config.max_retained,
            max_retained_bytes=retained_results_bound(config.state_dir, config.max_retained_bytes),
            on_forget=self._forget,
            on_forget_lost=recorder.forgotten_lost,
            on_dropped=lambda limit: metrics.results_dropped.labels(limit).inc(),
        )
        metrics.count_gauges(lambda: len(self.calls.running), lambda: len(self.calls.retained))
        metrics.retained_bytes.set_function(lambda: self.calls.retained_bytes)
        self._processes = ProcessSet(bounds=TreeBounds(config.limit_check_interval_s))
        self._launching: dict[str, asyncio.Future[FunctionCall]] = {}
        self._starting = 0
        self.shutting_down = False
        #: set when the journal has grown past what it keeps: rewrite it now, not at the
        #: next second (results that come fast would fill a small disk meanwhile)
        self._maintain_due = asyncio.Event()
        #: where the calls' events go (noded.master sets it); None: nowhere
        self.emit: Emit | None = None

    def recover(self) -> None:
        """Take over from the daemon before: kill its leftovers, keep its results, and
        remember the request_ids of the calls it lost; then rewrite the journal."""
        found = self.recorder.journal.replay(result_ttl_s=self._config.result_ttl_s)
        killed, lost = kill_leftovers(
            found.unfinished, self._trees, self.calls, self._daemon_pid, time.time(),
            on_lost=self.recorder.lost_at_start,
        )  # fmt: skip
        for call in found.finished:
            self._outputs.reopen(call)
        self.calls.take_over(found.finished, [*found.lost, *lost], self._request_key)
        self.recorder.rewrite(self.calls.all_calls(), self.calls.lost)
        self._outputs.keep_only(call.fnc_id for call in self.calls.all_calls())
        if found.unfinished or found.finished or found.lost:
            event(log, "daemon.recovered", results=len(found.finished), killed_groups=killed,
                  lost=len(found.unfinished), lost_keys=len(self.calls.lost))  # fmt: skip

    # --- procedures -------------------------------------------------------------

    def checked(self, request: StartFunctionRequest) -> FunctionSpec:
        """The function a StartFunction asks for, its arguments checked (404, 400)."""
        spec = self._registry.get(request.fn_name)
        if spec is None:
            raise UnknownFunction(self._registry.not_found(request.fn_name))
        spec.check_args(request.fn_args)
        return spec

    async def start(
        self,
        request: StartFunctionRequest,
        caller: Caller | None = None,
        spec: FunctionSpec | None = None,
    ) -> CallState:
        """StartFunction: check (unless ``spec`` is the checked function), spawn (unless
        the request_id is known), then wait.  ``caller`` owns the call."""
        spec = spec or self.checked(request)
        start = self._start_of(request, spec, caller)
        call = self._existing_call(start)
        if call is None:
            call = await self._launch_once(start)
        return await self.wait(call, request.timeout)

    async def wait(
        self, call: FunctionCall, timeout_s: float, output_from: int | None = None
    ) -> CallState:
        """Wait for a call up to ``timeout_s``, capped by max_wait; answer its state.

        With ``output_from``, the wait also ends at output or progress past that
        position, and the answer carries the output from there."""
        timeout_s = min(timeout_s, self._config.max_wait_s)
        if output_from is None:
            await call.wait(timeout_s)
            return call.state()
        await call.wait_for_output(output_from, timeout_s)
        state = call.state()
        state.output = self._outputs.read(call, output_from)
        return state

    async def abort(
        self, call: FunctionCall, reason: AbortReason, caller: Caller | None = None
    ) -> CallState:
        """Kill a running call's process group; answer its state once the process ended.
        ``caller``: who asked (an AbortFunction, audited), None for the daemon itself."""
        if reason == "aborted":
            self.recorder.aborted(call, caller, "AbortFunction")
        proc = self._processes.get(call.fnc_id)
        if proc is not None and not call.finished:
            call.abort_reason = call.abort_reason or reason
            event(log, "call.abort", fnc_id=call.fnc_id, fn_name=call.fn_name, reason=reason)
            self.metrics.aborts.labels(reason).inc()
            proc.terminate_group()
            await proc.wait_reaped(self._config.kill_grace_s + 5.0)
        return call.state()

    @property
    def registry(self) -> Registry:
        """The functions new calls may run (replaced by a reload)."""
        return self._registry

    def replace_functions(self, registry: Registry, spawner: Spawner) -> None:
        """ReloadFunctions: new calls are checked against ``registry`` and run by
        ``spawner``; running calls go on with the old ones."""
        self._registry = registry
        self.spawners.replace(spawner)

    def find(self, fnc_id: FncId) -> FunctionCall:
        return self.calls.get(fnc_id)

    def listing(self, owner: str | None = None) -> list[dict[str, Any]]:
        """ListFunctions: running and retained calls (``owner``'s only, if given), with
        cpu and rss for running ones."""
        calls = self.calls.all_calls()
        return [listing_entry(call) for call in calls if owner in (None, call.owner)]

    # --- starting -----------------------------------------------------------------

    def _request_key(self, request_id: str | None, owner: str | None) -> str | None:
        return request_key(request_id, owner if self._per_owner else None)

    def _start_of(
        self, request: StartFunctionRequest, spec: FunctionSpec, caller: Caller | None
    ) -> Start:
        owner = caller.name if caller is not None else None
        key = self._request_key(request.request_id, owner)
        limits = spec.limits_over(self._config.default_limits)
        return Start(
            request=request,
            encoded=encode_start(request, limits),
            limits=limits,
            caller=caller,
            owner=owner,
            key=key,
            digest=args_digest(request.fn_name, request.fn_args) if key is not None else b"",
        )

    def _existing_call(self, start: Start) -> FunctionCall | None:
        return None if start.key is None else self.calls.by_request_id(start.key, start.digest)

    async def _launch_once(self, start: Start) -> FunctionCall:
        """Launch, unless a request with the same request_id is launching right now."""
        key = start.key
        if key is None:
            return await self._launch(start)
        launching = self._launching.get(key)
        if launching is not None:  # its twin is waiting for a process: share its call
            await asyncio.shield(launching)
            existing = self._existing_call(start)
            assert existing is not None
            return existing
        self._launching[key] = launching = asyncio.get_running_loop().create_future()
        try:
            call = await self._launch(start)
            launching.set_result(call)
            return call
        except BaseException as exc:
            launching.set_exception(exc)
            launching.exception()  # retrieved: twins that wait get it, no warning otherwise
            raise
        finally:
            del self._launching[key]

    async def _launch(self, start: Start) -> FunctionCall:
        """Take a process, record its call (or kill it unsent), start it."""
        self._admit()
        self._starting += 1  # counted against the limit while the process is made
        try:
            started = time.time()
            proc = await self.spawners.take()
            call = await self._recorded(start, proc, started)
        finally:
            self._starting -= 1
        self._take_in(call, proc, start)
        proc.start(start.encoded, CallHandOn(call, self._on_decided, self._outputs, self._emit))
        if start.request.abort_after is not None:
            timer = asyncio.get_running_loop().call_later(
                start.request.abort_after, self._abort_soon, call, "abort_after"
            )
            proc.decided.add_done_callback(lambda _: timer.cancel())
        event(log, "call.start", fnc_id=call.fnc_id, fn_name=call.fn_name, pid=call.pid)
        self.metrics.call_started(call.fn_name)
        return call

    async def _recorded(self, start: Start, proc: FunctionProcess, started: float) -> FunctionCall:
        """``proc``'s call, its start written (a call the journal does not know would
        outlive a crash unseen, one the audit log does not know would run unaudited); if
        it cannot be, ``proc`` is killed unsent, and reaped before the error is raised."""
        try:
            call = self._call_of(start, proc, started)
            await self.recorder.started(call, start.caller, start.request.fn_args)
        except BaseException as exc:
            proc.kill_group()
            if isinstance(exc, Exception):  # (cancelled: the reaping goes on unwaited)
                await proc.wait_reaped(self._config.kill_grace_s + 5.0)
            raise
        return call

    def _call_of(self, start: Start, proc: FunctionProcess, started: float) -> FunctionCall:
        request = start.request
        call = FunctionCall(
            fnc_id=str(FncId.new(self._daemon_pid, proc.pid, started)),
            fn_name=request.fn_name,
            pid=proc.pid,
            started=started,
            request_id=request.request_id,
            digest=start.digest,
            owner=start.owner,
            request_key=start.key,
        )
        call.pid_birth = proc.birth
        call.cgroup = str(proc.tree.path) if isinstance(proc.tree, CgroupTree) else None
        return call

    def _take_in(self, call: FunctionCall, proc: FunctionProcess, start: Start) -> None:
        """A recorded call is listed, abortable and bounded from now on."""
        self.calls.add(call)
        self._processes.add(call.fnc_id, proc, start.limits)
        proc.reaped.add_done_callback(lambda _: self._on_reaped(call, proc))

    def _emit(self) -> Emit | None:
        return self.emit

    def _on_reaped(self, call: FunctionCall, proc: FunctionProcess) -> None:
        if proc.sigkilled:
            self.metrics.kills.inc()
            event(log, "call.killed", logging.WARNING, fnc_id=call.fnc_id, fn_name=call.fn_name)

    def _admit(self) -> None:
        if self.shutting_down:
            raise NodeShuttingDown("ganeti-noded is shutting down and takes no new calls")
        if len(self.calls.running) + self._starting >= self._config.max_functions:
            self.metrics.rejections.labels("max_functions").inc()
            running = len(self.calls.running)
            event(log, "limit.max_functions", level=logging.WARNING, running=running)
            raise NodeBusy(
                f"{running} function{' is' if running == 1 else 's are'} running and "
                f"{self._starting} starting, the limit (--max-functions) is "
                f"{self._config.max_functions}; "
                "retry later",
                retry_after_s=BUSY_RETRY_AFTER_S,
            )

    def _forget(self, call: FunctionCall) -> None:
        self.recorder.forgotten(call)
        self._outputs.forget(call)

    def _on_decided(self, call: FunctionCall, outcome: Outcome) -> None:
        result, error = call_result(outcome, call.abort_reason, self._config.max_result_bytes)
        self._outputs.finish(call)
        call.finish(result, error)
        # written before any waiter runs: none is woken until this callback returns
        self.recorder.finished(call)
        self.calls.retain(call)
        if self.recorder.journal.needs_compaction(*self._live()):
            self._maintain_due.set()
        # the log line and the metrics wait for the loop's next turn, after the answer
        asyncio.get_running_loop().call_soon(self._record_finish, call)

    def _record_finish(self, call: FunctionCall) -> None:
        outcome = call.error["type"] if call.error else "ok"
        self.metrics.call_finished(call.fn_name, outcome, call.elapsed_s)
        finish_event(self.emit, call)
        level = logging.INFO if call.error is None else logging.WARNING
        event(log, "call.finish", level=level, fnc_id=call.fnc_id, fn_name=call.fn_name,
              duration_s=round(call.elapsed_s, 6), outcome=outcome)  # fmt: skip

    def _abort_soon(self, call: FunctionCall, reason: AbortReason) -> None:
        if not call.finished:
            asyncio.get_running_loop().create_task(self.abort(call, reason))

    # --- background and shutdown ---------------------------------------------------

    async def expire_forever(self) -> None:
        """Drop retained results past their TTL, checking about once a second; keep the
        journal written and compact (:meth:`CallRecorder.maintain`): at once when a
        result makes it grow past what it keeps."""
        interval_s = min(1.0, self._config.result_ttl_s / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._maintain_due.wait(), interval_s)
            self._maintain_due.clear()
            self.calls.expire(time.time())
            await self.recorder.maintain(self.calls.all_calls(), self.calls.lost, self._live())

    def _live(self) -> tuple[int, int]:
        """What the journal must keep: its live calls, and the bytes of their results."""
        return len(self.calls) + len(self.calls.lost), self.calls.retained_bytes

    def kill_all(self) -> int:
        """SIGKILL every unreaped process group of a call, now (a forced exit); how many."""
        procs = self._processes.unreaped()
        for proc in procs:
            proc.kill_group()
        return len(procs)

    async def shutdown(self) -> None:
        """Refuse new calls, SIGTERM every group, wait the grace, SIGKILL the rest, reap."""
        self.shutting_down = True
        for call in list(self.calls.running.values()):
            call.abort_reason = call.abort_reason or "shutdown"
            self.metrics.aborts.labels("shutdown").inc()
        running = sum(1 for proc in self._processes.unreaped() if not proc.exited)
        event(
            log,
            "shutdown.terminate",
            calls=len(self.calls.running),
            processes=running,  # also those of finished calls, still on their way out
            grace_s=self._config.shutdown_grace_s,
        )
        await self._processes.terminate_all(self._config.shutdown_grace_s)
        if unreaped := self._processes.unreaped():
            event(log, "shutdown.unreaped", logging.ERROR, pids=[proc.pid for proc in unreaped])
        await self.spawners.close()
        await self.recorder.close()
