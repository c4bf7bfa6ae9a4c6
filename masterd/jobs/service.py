"""SubmitJob, WaitForJob, AbortJob and ListJobs: the jobs' in-process side.

A job runs here as a background task (:class:`~masterd.jobs.runner.JobRun`), its owner
this masterd's instance id.  At start the jobs an earlier masterd on this store left
unfinished are claimed and go on (:meth:`Jobs.resume`).  WaitForJob waiters are woken by
an in-process signal set after each commit of a node's end or a job's, never by polling:
a waiter takes the current signal, reads the store, and sleeps on that signal only if
there was nothing to answer, so a result stored between its read and its sleep still
wakes it.  On a shared store the same signal is set by another master's commits (its
NOTIFY, :meth:`Jobs.stored_elsewhere`): a WaitForJob sent to a master that does not
run the job is woken as one sent to its owner, and an AbortJob sent to it reaches the
owner (the notice ``abort:<job id>``: the owner's run reads the job's abort and acts).
Jobs that ended more than ``job_ttl_s`` ago are deleted in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from masterd.jobs.runner import JobRun, NodeTLS
from masterd.options import Rollout
from masterd.store.base import Store
from masterd.store.jobs import (
    ABORT_CALLS,
    ABORT_NOTICE,
    ABORTED,
    FINISHED,
    QUEUED,
    JobHead,
    JobNode,
    JobNotHeld,
    JobProgress,
    JobRecord,
    JobResult,
    JobSpec,
)
from rpc_client.errors import (
    BadRequest,
    RemoteError,
    RequestIdConflict,
    UnknownFunction,
    UnknownJob,
)
from rpc_client.job_protocol import (
    COUNTS,
    AbortJobRequest,
    ListJobsRequest,
    SubmitJobRequest,
    WaitForJobRequest,
)
from rpc_client.logs import event
from rpc_client.protocol import dumps, loads
from rpc_client.tls import TLSConfig

log = logging.getLogger("masterd.jobs")

#: results in one WaitForJob answer, at most; and bytes of them (at least one goes)
RESULTS_PAGE = 1000
MAX_ANSWER_BYTES = 4 * 1024 * 1024
LIST_DEFAULT = 100
#: how often the expiry looks, at most and at least
_EXPIRE_EVERY_MAX_S, _EXPIRE_EVERY_MIN_S = 3600.0, 0.2


class Jobs:
    """The jobs of one masterd."""

    def __init__(
        self, store: Store, instance: str, *,
        known_nodes: Callable[[], Awaitable[list[dict[str, Any]]]],
        job_ttl_s: float, max_result_bytes: int, max_wait_s: float,
        functions_of: Callable[[str], tuple[str, ...]] = lambda _name: (),
        node_tls: TLSConfig | None = None,
    ) -> None:  # fmt: skip
        """``node_tls``: masterd's own certificate, key and CA when it serves TLS; then
        every node is called over mutual TLS with them (:class:`NodeTLS`)."""
        self._store = store
        self._node_tls = NodeTLS(node_tls)
        self.instance = instance
        self._known_nodes = known_nodes
        self._functions_of = functions_of
        self._job_ttl_s = job_ttl_s
        self._max_result_bytes = max_result_bytes
        self._max_wait_s = max_wait_s
        self._runs: dict[str, JobRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: reads of a job's abort after a shared store's notice
        self._checks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._closing = False

    # --- procedures -------------------------------------------------------------------

    async def submit(self, request: SubmitJobRequest) -> dict[str, Any]:
        asked = _comparable(request)
        nodes = select_nodes(await self._known_nodes(), request.nodes, request.labels)
        check_function(request.fn_name, nodes, self._functions_of)
        _check_rollout(request, len(nodes))
        spec = JobSpec(fn_name=request.fn_name, fn_args=request.fn_args, nodes=nodes,
                       timeout_s=request.timeout, abort_after=request.abort_after,
                       window=request.window, canary=request.canary,
                       max_failures=request.max_failures)  # fmt: skip
        job = JobRecord(id=uuid.uuid4().hex, spec=spec, request=asked,
                        request_id=request.request_id, state=QUEUED, owner=self.instance,
                        abort=None, submitted=time.time())  # fmt: skip
        stored = await self._store.add_job(job)
        if stored.id != job.id:
            if stored.request != asked:
                raise RequestIdConflict(
                    f"request_id {request.request_id!r} is job {stored.id}'s, submitted "
                    f"with other arguments: {dumps(stored.request).decode()}"
                )
            return await self._state(stored.head(), None)
        event(log, "job.submitted", job_id=job.id, fn_name=spec.fn_name, nodes=len(spec.nodes))
        self._start(job, JobProgress())
        return await self._state(job.head(), None)

    async def wait(self, request: WaitForJobRequest) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + min(request.timeout, self._max_wait_s)
        while True:
            changed = self._changed
            job = await self._head(request.job_id)
            answer = await self._state(job, request.results_from)
            left = end - loop.time()
            ended = job.state in (FINISHED, ABORTED)
            if ended or left <= 0 or self._closing or answer.get("results", {}).get("items"):
                return answer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def abort(self, request: AbortJobRequest) -> dict[str, Any]:
        job = await self._head(request.job_id)
        if job.state not in (FINISHED, ABORTED):
            await self._store.abort_job(job.id, request.calls)
            run = self._runs.get(job.id)
            if run is not None:
                run.abort(request.calls)
            event(log, "job.abort", job_id=job.id, calls=request.calls)
            self.changed()
        return await self._state(await self._head(job.id), None)

    async def list(self, request: ListJobsRequest) -> dict[str, Any]:
        jobs = await self._store.list_jobs(request.limit or LIST_DEFAULT)
        return {"jobs": [await self._state(job.head(), None) for job in jobs]}

    # --- life -------------------------------------------------------------------------

    async def resume(self) -> None:
        """Claim the jobs an earlier masterd on this store left unfinished (on a shared
        store, also those of a master whose row lapsed: called again every renewal);
        go on with each not running here already."""
        for job in await self._store.claim_jobs(self.instance):
            if job.id in self._runs:
                continue
            progress = await self._store.job_progress(job.id)
            event(log, "job.resumed", job_id=job.id, ended=len(progress.results),
                  asked=len(progress.request_ids), nodes=len(job.spec.nodes))  # fmt: skip
            self._start(job, progress)
            if self._store.shared:  # an abort stored since the claim read the job's row
                self._abort_noticed(job.id)  # (its notice came while no run was here)

    async def expire_forever(self) -> None:
        interval = max(_EXPIRE_EVERY_MIN_S, min(_EXPIRE_EVERY_MAX_S, self._job_ttl_s / 4))
        while True:
            try:
                expired = await self._store.expire_jobs(time.time() - self._job_ttl_s)
                if expired:
                    event(log, "job.expired", jobs=expired, job_ttl_s=self._job_ttl_s)
            except RemoteError as exc:
                event(log, "job.expire_failed", logging.WARNING, error=str(exc))
            await asyncio.sleep(interval)

    def close_waiters(self) -> None:
        """Shutdown: long-polls answer at once."""
        self._closing = True
        self.changed()

    async def stop(self) -> None:
        """Shutdown: the runs stop where they are; the next start goes on from the store."""
        for task in [*self._tasks, *self._checks]:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)

    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def stored_elsewhere(self, job_id: str) -> None:
        """Another master committed a node's end or a state of ``job_id`` (a shared
        store's NOTIFY; ``""``: of any job): the waiters read the store again."""
        self.changed()
        if not job_id or job_id.startswith(ABORT_NOTICE):  # perhaps an AbortJob elsewhere
            self._abort_noticed(job_id.removeprefix(ABORT_NOTICE))

    def _abort_noticed(self, job_id: str) -> None:
        """An AbortJob was stored for ``job_id`` (``""``: perhaps for any job, a notice
        may have been lost), maybe by another master: its run here, if any, acts on it."""
        for one in [job_id] if job_id else list(self._runs):
            if one in self._runs:
                task = asyncio.create_task(self._reread_abort(one), name=f"abort? {one}")
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)

    async def _reread_abort(self, job_id: str) -> None:
        try:
            job = await self._store.get_job_head(job_id)
        except RemoteError as exc:  # an outage: the next notice (or reconnect) reads again
            event(log, "job.abort_read_failed", logging.WARNING, job_id=job_id, error=str(exc))
            return
        run = self._runs.get(job_id)
        if job is None or job.abort is None or run is None:
            return
        if run.abort(job.abort == ABORT_CALLS):  # not one taken here already
            event(log, "job.abort", job_id=job_id, calls=job.abort == ABORT_CALLS,
                  stored_by="another master")  # fmt: skip

    # --- inside -----------------------------------------------------------------------

    def _start(self, job: JobRecord, progress: JobProgress) -> None:
        run = JobRun(self._store, job, progress, max_result_bytes=self._max_result_bytes,
                     on_change=self.changed, tls=self._node_tls)  # fmt: skip
        self._runs[job.id] = run
        task = asyncio.create_task(self._run(run), name=f"job {job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, run: JobRun) -> None:
        try:
            await run.run()
        except JobNotHeld as exc:  # another master may run it; claimed again if not
            event(log, "job.not_held", logging.WARNING, job_id=run.job.id, error=str(exc))
        except RemoteError as exc:  # not an outage (those are waited through)
            event(log, "job.stalled", logging.ERROR, job_id=run.job.id, error=str(exc))
        finally:
            self._runs.pop(run.job.id, None)

    async def _head(self, job_id: str) -> JobHead:
        """The job's own row (not its nodes: WaitForJob reads it once an answer)."""
        job = await self._store.get_job_head(job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id!r} here (it never was, or it expired)")
        return job

    async def _state(self, job: JobHead, results_from: int | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "job_id": job.id, "state": job.state, "fn_name": job.fn_name,
            "submitted": job.submitted, "owner": job.owner,
            "counts": await self._counts(job.id),
        }  # fmt: skip
        if results_from is not None:
            answer["results"] = await self._results(job.id, results_from)
        return answer

    async def _counts(self, job_id: str) -> dict[str, int]:
        """Kept in memory by the job's run here; counted in the store if none runs here."""
        run = self._runs.get(job_id)
        if run is not None:
            return run.counts.as_wire()
        counts = dict.fromkeys(COUNTS, 0)
        counts.update(await self._store.job_counts(job_id))
        return counts

    async def _results(self, job_id: str, results_from: int) -> dict[str, Any]:
        items: list[JobResult] = []
        size = 0
        for result in await self._store.job_results(job_id, results_from, RESULTS_PAGE):
            size += len(dumps(result.result)) + len(dumps(result.error))
            if items and size > MAX_ANSWER_BYTES:
                break
            items.append(result)
        position = items[-1].seq + 1 if items else results_from
        return {"from": results_from, "next": position, "items": [i.to_wire() for i in items]}


def select_nodes(
    known: list[dict[str, Any]], names: tuple[str, ...] | None, labels: tuple[str, ...] | None
) -> tuple[JobNode, ...]:
    """SubmitJob's nodes: by name (in that order), by labels (all of them), or all; with
    both, those named that carry all the labels (as ``rpc-cli job submit --names
    --labels`` says)."""
    by_name = {node["name"]: node for node in known}
    wanted = set(labels or ())
    if names is not None:
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise BadRequest(f"no node named {', '.join(map(repr, unknown))} is registered "
                             "or listed in --nodes")  # fmt: skip
        if len(set(names)) != len(names):
            raise BadRequest("field 'nodes' names a node more than once")
        chosen = [by_name[name] for name in names if wanted <= set(by_name[name]["labels"])]
    else:
        chosen = [by_name[name] for name in sorted(by_name)
                  if wanted <= set(by_name[name]["labels"])]  # fmt: skip
    if wanted and not chosen:
        among = " of those named" if names is not None else ""
        raise BadRequest(f"no registered node{among} carries the labels "
                         f"{', '.join(map(repr, sorted(wanted)))}")  # fmt: skip
    return tuple(JobNode(node["name"], node["address"], node["port"]) for node in chosen)


def check_function(
    fn_name: str, nodes: tuple[JobNode, ...], functions_of: Callable[[str], tuple[str, ...]]
) -> None:
    """``UnknownFunction`` for a ``fn_name`` that none of the job's nodes registered;
    no check when a node registered no function list (it may run anything)."""
    lists = {node.name: functions_of(node.name) for node in nodes}
    if not lists or not all(lists.values()) or any(fn_name in f for f in lists.values()):
        return
    known = sorted({name for functions in lists.values() for name in functions})
    close = difflib.get_close_matches(fn_name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownFunction(f"no selected node registered a function {fn_name!r}{hint}; "
                          f"they registered: {', '.join(known)}")  # fmt: skip


def _check_rollout(request: SubmitJobRequest, count: int) -> None:
    """``BadRequest`` for a roll-out that does not fit the job's ``count`` nodes (more
    canaries than nodes), as ``call_many`` refuses it."""
    try:
        Rollout(window=request.window, canary=request.canary,
                max_failures=request.max_failures).check_nodes(count)  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise BadRequest(str(exc)) from None


def _comparable(request: SubmitJobRequest) -> dict[str, Any]:
    """The request as stored and compared on a resend (through JSON, as the store has it)."""
    body = request.to_wire()
    body.pop("request_id")
    return dict(loads(dumps(body)))
