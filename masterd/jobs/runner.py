"""One job's run: ``call_many``'s roll-out (:class:`masterd.fanout.FanOutRun`) on the
job's nodes, its records in the store, every node's end recorded once.

A resumed job (masterd was killed, or stopped, and started again) goes on from the store:
a node with an fnc_id is waited for, one with only a request_id is sent it again (the
node answers with the call it started, or ``404 UnknownFunctionCall`` if it lost it: that
node's end), one never asked is started, one that ended is not touched.  A node's
``timeout`` counts from when its start was first recorded: a resumed call has what is
left of it (none left: asked once for its state, then timed out and aborted), a node
never asked its whole timeout.  A stored AbortJob skips only the nodes never asked: one
whose start was recorded is waited for as above (with ``calls``, aborted on its node),
and ends with its true outcome.

Through a store outage the job pauses and goes on (:mod:`masterd.jobs.outage`): its
records are written again until the store takes them, none dropped; a start the store
refuses because the job is no longer this masterd's (:class:`JobNotHeld`) ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from masterd.batch import Progress
from masterd.call import CallOptions, Deadline, send_abort
from masterd.fanout import FanOutRun
from masterd.jobs.bounded import bounded_error
from masterd.jobs.counts import JobCounts
from masterd.jobs.journal import StoreJournal, test_pause
from masterd.jobs.outage import StorePatience
from masterd.results import NodeResult
from masterd.rollout import Rollout
from masterd.store.base import Store
from masterd.store.jobs import (
    ABORT_CALLS,
    ABORTED,
    FINISHED,
    RUNNING,
    JobNotHeld,
    JobProgress,
    JobRecord,
    NewResult,
)
from rpc_client.client import NodeClient
from rpc_client.errors import FunctionFailed, NodeTimeout, RPCError, Skipped
from rpc_client.logs import event
from rpc_client.protocol import dumps
from rpc_client.tls import TLSConfig
from rpc_client.transport import Pool

log = logging.getLogger("masterd.jobs")

ABORTED_WHY = "the job was aborted (AbortJob)"
#: how long AbortJob's look for a call by its request_id may take
_FIND_CALL_S = 2.0


class NodeTLS:
    """How masterd calls nodes: over plain HTTP when it serves without TLS; when it serves
    TLS, every node over mutual TLS with masterd's own certificate (its role ``masterd``),
    the node's certificate signed by the CA and checked against the node's registered
    name, which masterd under TLS takes only from that node's certificate (Register as
    itself only).  One SSL context for every job: made once, at start."""

    def __init__(self, config: TLSConfig | None) -> None:
        self.config = config
        self.context: ssl.SSLContext | None = config.client_context() if config else None


class JobRun:
    """A job running in this masterd: its fan-out, and what AbortJob may do to it."""

    def __init__(
        self, store: Store, job: JobRecord, progress: JobProgress, *,
        max_result_bytes: int, on_change: Callable[[], None], tls: NodeTLS | None = None,
    ) -> None:  # fmt: skip
        self.job = job
        self._store = store
        self._max_result_bytes = max_result_bytes
        self._on_change = on_change
        self._pool = Pool()
        spec = job.spec
        tls = tls or NodeTLS(None)
        self._clients = [NodeClient(n.address, n.port, name=n.name, pool=self._pool,
                                    tls=tls.config, ssl_context=tls.context)
                         for n in spec.nodes]  # fmt: skip
        self._patience = StorePatience(job.id)
        #: what WaitForJob answers as the job's counts while it runs here
        self.counts = JobCounts(len(spec.nodes), progress)
        self._not_held: JobNotHeld | None = None
        self._task: asyncio.Task[Any] | None = None
        journal = self._journal = StoreJournal(store, job.id, [n.name for n in spec.nodes],
                                               patience=self._patience,
                                               on_not_held=self._lost,
                                               counts=self.counts)  # fmt: skip
        done = {name: _stored(result) for name, result in progress.results.items()}
        self._ended: set[str] = set(done)
        self.fan_out = FanOutRun(
            Deadline(None), spec.fn_name, spec.fn_args, CallOptions(abort_after_s=spec.abort_after),
            None, journal, Progress(header={}, request_ids=dict(progress.request_ids),
                                    asked=dict(progress.asked),
                                    fnc_ids=dict(progress.fnc_ids), finished=done),
            node_timeout_s=spec.timeout_s,
        )  # fmt: skip
        self.aborted = job.abort is not None
        if self.aborted:
            self.fan_out.stopped = ABORTED_WHY
        self._aborts: set[asyncio.Task[None]] = set()
        self._calls_aborted = False

    async def run(self) -> None:
        """The whole job: every node's end recorded, then the job's.  Raises
        :class:`JobNotHeld` if another master may have taken the job."""
        spec = self.job.spec
        rollout = Rollout(window=spec.window, canary=spec.canary, max_failures=spec.max_failures)
        self._task = asyncio.current_task()
        if self.job.abort == ABORT_CALLS:  # aborted before a restart: an earlier run's
            self.abort(calls=True)  # calls are aborted on their nodes, waited for to end
        # 'running' shares the first nodes' start records' commit rather than delaying
        # their starts by a commit of its own; stored before the job's end is
        running = asyncio.create_task(self._set_state(RUNNING, None), name="job running")
        try:
            await self._record_all(rollout)
            await running
            await test_pause("before_end")
            state = ABORTED if self.aborted else FINISHED
            await self._set_state(state, time.time())
            event(log, "job.ended", job_id=self.job.id, state=state)
        except asyncio.CancelledError:
            if self._not_held is None or self._task is None:
                raise
            self._task.uncancel()
            raise self._not_held from None
        except JobNotHeld:  # refused in this task: the cancel _lost asked for is not needed
            if self._task is not None and self._task.cancelling():
                self._task.uncancel()
            raise
        finally:
            running.cancel()  # if the run stopped first
            await self._pool.close()
            self._on_change()

    async def _set_state(self, state: str, at: float | None) -> None:
        await self._write(state, lambda: self._store.set_job_state(self.job.id, state, at))

    async def _write(self, what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """A record of the job, through a store outage; one the store refuses because the
        job is no longer this masterd's ends the whole run (:meth:`_lost`)."""
        try:
            return await self._patience.write(what, attempt)
        except JobNotHeld as exc:
            self._lost(exc)
            raise

    def _lost(self, exc: JobNotHeld) -> None:
        """The store refused a record (a start, an end, the job's state): the job is no
        longer this masterd's.  The whole run stops at once (no further node, and no
        node's end taken for a failure or recorded here)."""
        if self._not_held is None and self._task is not None:
            self._not_held = exc
            self._task.cancel()

    async def _record_all(self, rollout: Rollout) -> None:
        """Each node's end, as it comes; not awaited one by one, so that results that
        come together share the store's commits (a commit each made a 1,000-node job
        take seconds past its last answer).  All are stored before this returns; if the
        run stops first, those not stored are asked again at the next resume."""
        recording: set[asyncio.Task[None]] = set()
        try:
            async with contextlib.aclosing(self.fan_out.all(self._clients, rollout)) as results:
                async for result in results:
                    recording.add(asyncio.create_task(self._record(result)))
            await asyncio.gather(*recording)
        except BaseException:
            for task in recording:
                task.cancel()
            raise

    async def _record(self, result: NodeResult) -> None:
        if result.node in self._ended:  # ended before a resume: kept as it was
            return
        self._ended.add(result.node)
        fnc_id = self.fan_out.fnc_ids.get(result.node)
        new = new_result(result, fnc_id, self._max_result_bytes)
        await self._write("result", lambda: self._store.record_result(self.job.id, new))
        self.counts.ended(new.node, new.outcome)
        self._on_change()

    def abort(self, calls: bool) -> bool:
        """Start no further node; with ``calls``, abort the running calls on their nodes
        (they end ``failed`` with ``FunctionAborted``).  False if it did nothing new (the
        same abort again: from the store's notice of one taken here, say)."""
        if self.aborted and (self._calls_aborted or not calls):
            return False
        self.aborted = True
        self.fan_out.stopped = self.fan_out.stopped or ABORTED_WHY
        launcher = self.fan_out.launcher
        if launcher is not None and launcher.stopped is None:
            launcher.stopped = ABORTED_WHY
        if not calls:
            return True
        self._calls_aborted = True
        # a start recorded but not yet sent is skipped by the fan-out itself (it checks
        # ``stopped`` after the record); one sent, or an earlier run's, is aborted here
        asked = {**self.fan_out.progress.request_ids, **self.fan_out.sending}
        for client in self._clients:
            if client.name in asked and client.name not in self._ended:
                task = asyncio.create_task(self._abort_call(client, asked[client.name]),
                                           name=f"abort {client.name}")  # fmt: skip
                self._aborts.add(task)
                task.add_done_callback(self._aborts.discard)
        return True

    async def _abort_call(self, client: NodeClient, request_id: str) -> None:
        """Abort a node's call; one whose fnc_id is not known yet (its StartFunction is
        still waiting) is found by its request_id: a StartFunction with it answers that
        call's state at once and starts nothing new."""
        fnc_id = self.fan_out.fnc_ids.get(client.name)
        try:
            if fnc_id is None:
                spec = self.job.spec
                async with asyncio.timeout(_FIND_CALL_S):
                    state = await client.start_function(
                        spec.fn_name, spec.fn_args, timeout=0, abort_after=spec.abort_after,
                        request_id=request_id)  # fmt: skip
                fnc_id = state.fnc_id
        except (RPCError, TimeoutError) as exc:
            event(log, "job.abort_failed", logging.WARNING, job_id=self.job.id,
                  node=client.name, error=str(exc) or type(exc).__name__)  # fmt: skip
            return
        await send_abort(client, fnc_id)


def new_result(result: NodeResult, fnc_id: str | None, max_bytes: int) -> NewResult:
    """How a node ended, as the store keeps it: a node that never answered is
    ``unreachable`` (silent or refusing); a result over ``max_bytes`` is left on the node
    (``ResultTooLarge``, with the fnc_id to fetch it by); an error over it is cut
    (:func:`~masterd.jobs.bounded.bounded_error`)."""
    error = result.error
    fnc_id = fnc_id or getattr(error, "fnc_id", None)
    if result.ok:
        size = len(dumps(result.value))
        if size <= max_bytes:
            return NewResult(result.node, "ok", fnc_id, result.value, None)
        too_large = {"type": "ResultTooLarge", "size": size, "message": (
            f"the result is {size} bytes, over --max-job-result-bytes={max_bytes}: fetch it "
            f"from the node (WaitForFunction {fnc_id}) while the node keeps it")}  # fmt: skip
        return NewResult(result.node, "ok", fnc_id, None, too_large)
    outcome = result.outcome
    if isinstance(error, NodeTimeout) and fnc_id is None:  # it never answered at all
        outcome = "unreachable"
    return NewResult(result.node, outcome, fnc_id, None,
                     bounded_error(_error_of(error), fnc_id, max_bytes))  # fmt: skip


def _error_of(error: BaseException | None) -> dict[str, Any]:
    wire = getattr(error, "error", None)
    if isinstance(error, FunctionFailed) or isinstance(wire, dict):
        return dict(wire)  # type: ignore[arg-type]
    kind = getattr(error, "wire_type", None) or type(error).__name__
    return {"type": kind, "message": str(error) or kind}


def _stored(result: Any) -> NodeResult:
    """A stored end, as the roll-out counts it (its failure budget, its canaries)."""
    if result.outcome == "ok":
        return NodeResult(result.node, True, result.result)
    message = (result.error or {}).get("message", result.outcome)
    error = Skipped(message, node=result.node) if result.outcome == "skipped" else RPCError(
        message, node=result.node)  # fmt: skip
    return NodeResult(result.node, False, error=error)
