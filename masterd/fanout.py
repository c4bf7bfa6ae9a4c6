"""``call_many``: one function on many nodes, each node's result as it arrives.

Every node is named exactly once: a success, a remote failure, a transport failure, a
node never started (:class:`Skipped`, see :mod:`masterd.rollout`), or, for a node still
outstanding when the deadline has passed, a :class:`CallTimeout` (with the fnc_id if the
call started) or a :class:`NodeTimeout`.  None is dropped silently.

With ``batch_file``, what is asked of each node is written down first, so that a master
that dies can be replaced by :func:`resume` without running anything twice
(:mod:`masterd.batch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable
from pathlib import Path
from typing import Any, TypedDict, Unpack

from masterd.batch import BatchFile, Progress
from masterd.call import (
    LATE_S,
    Deadline,
    check_client,
    new_request_id,
    outcome_of,
    resume_call,
    run_call,
    send_abort,
)
from masterd.journal import FileJournal, Journal
from masterd.options import (
    DEFAULT_RETRY,
    CallOptions,
    OldFanOutKeywords,
    RetryPolicy,
    Rollout,
    options_of,
)
from masterd.output_events import OutputCallback
from masterd.results import GatherSummary, NodeResult
from masterd.rollout import Launcher
from rpc_client.client import NodeClient
from rpc_client.errors import CallTimeout, NodeTimeout, Skipped
from rpc_client.protocol import CallState

__all__ = ["GatherSummary", "NodeResult", "call_many", "gather", "resume"]

#: told (node name, None) as a node is asked, (node name, fnc_id) once it named its call
CallCallback = Callable[[str, str | None], None]
#: how long past the call deadline (itself within LATE_S) the gather waits for stragglers
_GUARD_S = LATE_S + 0.25
_CANCEL_WAIT_S = 5.0


class CallManyKeywords(OldFanOutKeywords, total=False):
    """The keywords of :func:`call_many` past the call itself, for what passes them on
    (:func:`gather`, :class:`masterd.Cluster`, :class:`masterd.blocking.Cluster`)."""

    options: CallOptions | None
    rollout: Rollout | None
    on_output: OutputCallback | None
    batch_file: Path | str | None
    on_call: CallCallback | None


class ResumeKeywords(TypedDict, total=False):
    """The keywords of :func:`resume`, for what passes them on."""

    timeout: float | None
    wait_s: float
    window: int | None
    max_failures: int | None
    retry: RetryPolicy
    on_output: OutputCallback | None
    on_call: CallCallback | None


async def call_many(
    nodes: Iterable[NodeClient],
    fn_name: str,
    fn_args: dict[str, Any] | None = None,
    timeout: float | None = None,
    *,
    options: CallOptions | None = None,
    rollout: Rollout | None = None,
    on_output: OutputCallback | None = None,
    batch_file: Path | str | None = None,
    on_call: CallCallback | None = None,
    **old: Unpack[OldFanOutKeywords],
) -> AsyncGenerator[NodeResult, None]:
    """Call ``fn_name`` on the nodes; yield each :class:`NodeResult` as it comes.

    ``options`` (:class:`CallOptions`) says how each node's call is made, ``rollout``
    (:class:`Rollout`) how the nodes start (:mod:`masterd.rollout`); a roll-out with more
    canaries than nodes is a ``ValueError``.  The keywords they replace (``wait_s``,
    ``abort_after``, ``retry``, ``window``, ``canary``, ``max_failures``, ``concurrency``)
    still work for one release, with a :class:`DeprecationWarning`.  With ``on_output``,
    every node's output is followed: each :class:`OutputEvent`, its ``node`` the node's
    name, is passed to it as it arrives.  With ``batch_file``, the fan-out can be resumed
    after the master died (:func:`resume`).  ``on_call(node, None)`` is called as a node
    is asked, and ``on_call(node, fnc_id)`` once it has named its call (at its first
    answer): what a report after a Ctrl-C needs (``rpc-cli gather``).

    Leaving the loop early cancels the calls still running here (use
    ``contextlib.aclosing`` to have that happen at once rather than when the generator is
    collected); the functions already started on the nodes are not aborted.
    """
    options, rollout = options_of("call_many", options, rollout, old)
    clients = _unique(nodes)
    rollout.check_nodes(len(clients))
    batch = None
    if batch_file is not None:
        header = _header(fn_name, fn_args, timeout, options, rollout, clients)
        batch = FileJournal(BatchFile.create(Path(batch_file), header))
    run = _GatherRun(Deadline(timeout), fn_name, fn_args, options, on_output, batch,
                     on_call=on_call)  # fmt: skip
    async with contextlib.aclosing(run.all(clients, rollout)) as results:
        async for result in results:
            yield result


class _Unset:
    """What the batch file says (an option of :func:`resume` not given)."""

    def __repr__(self) -> str:
        return "FROM_BATCH_FILE"


FROM_BATCH_FILE: Any = _Unset()


async def resume(
    batch_file: Path | str,
    nodes: Iterable[NodeClient],
    *,
    timeout: float | None = FROM_BATCH_FILE,
    wait_s: float = FROM_BATCH_FILE,
    window: int | None = FROM_BATCH_FILE,
    max_failures: int | None = FROM_BATCH_FILE,
    retry: RetryPolicy = DEFAULT_RETRY,
    on_output: OutputCallback | None = None,
    on_call: CallCallback | None = None,
) -> AsyncGenerator[NodeResult, None]:
    """Go on with the fan-out of ``batch_file`` after the master that ran it died: the
    same function, arguments and options (the deadline counted afresh), every node named
    once, nothing run twice.  ``nodes`` must include every node of the fan-out.

    ``timeout``, ``wait_s``, ``window`` and ``max_failures``, if given, replace the batch
    file's for the rest of the fan-out (this run only: the file keeps the first run's).
    The canaries cannot change: they are the first nodes of the first run.  Raises
    :class:`masterd.batch.BatchFileBusy` if another run or resume holds the file."""
    batch, progress = BatchFile.reopen(Path(batch_file))
    try:
        given = {"timeout": timeout, "wait_s": wait_s, "window": window,
                 "max_failures": max_failures}  # fmt: skip
        run, clients, rollout = _resumed_run(batch, progress, nodes, on_output, on_call, retry,
                                             given)  # fmt: skip
    except BaseException:
        batch.close()
        raise
    async with contextlib.aclosing(run.all(clients, rollout)) as results:
        async for result in results:
            yield result


def _resumed_run(
    batch: BatchFile, progress: Progress, nodes: Iterable[NodeClient],
    on_output: OutputCallback | None, on_call: CallCallback | None, retry: RetryPolicy,
    given: dict[str, Any],
) -> tuple[_GatherRun, list[NodeClient], Rollout]:  # fmt: skip
    """The run that goes on with a batch file: its options, the given ones first."""
    header = progress.header
    by_name = {client.name: client for client in _unique(nodes)}
    missing = [name for name in header["nodes"] if name not in by_name]
    if missing:
        raise ValueError(f"the batch file names nodes not given: {', '.join(missing)}")
    option = {key: header[key] if value is FROM_BATCH_FILE else value
              for key, value in given.items()}  # fmt: skip
    options = CallOptions(wait_s=option["wait_s"], abort_after_s=header["abort_after"],
                          retry=retry)  # fmt: skip
    rollout = Rollout(window=option["window"], canary=header["canary"],
                      max_failures=option["max_failures"])  # fmt: skip
    run = _GatherRun(Deadline(option["timeout"]), header["fn_name"], header["fn_args"], options,
                     on_output, FileJournal(batch), progress, on_call=on_call)  # fmt: skip
    return run, [by_name[name] for name in header["nodes"]], rollout


async def gather(
    nodes: Iterable[NodeClient], fn_name: str, fn_args: dict[str, Any] | None = None,
    timeout: float | None = None, **kwargs: Unpack[CallManyKeywords],
) -> GatherSummary:  # fmt: skip
    """Collect :func:`call_many` (which takes the same keywords) into a
    :class:`GatherSummary`."""
    summary = GatherSummary()
    async with contextlib.aclosing(call_many(nodes, fn_name, fn_args, timeout, **kwargs)) as it:
        async for result in it:
            summary.results[result.node] = result
    return summary


class _GatherRun:
    """One fan-out: its results queue, what each node started, its journal.

    With ``node_timeout_s`` (a job of ganeti-masterd) there is no overall deadline: each
    node's call has that long from its start, and one still running then is aborted on
    its node.  ``stopped`` (set before :meth:`all` or while it runs: an abort) starts no
    further node, not even one whose start is being recorded; a node whose start an
    earlier run recorded goes on (:meth:`_check_stopped`)."""

    def __init__(
        self,
        deadline: Deadline,
        fn_name: str,
        fn_args: dict[str, Any] | None,
        options: CallOptions,
        on_output: OutputCallback | None = None,
        batch: Journal | None = None,
        progress: Progress | None = None,
        *,
        on_call: CallCallback | None = None,
        node_timeout_s: float | None = None,
    ) -> None:
        self.on_output = on_output
        self.deadline = deadline
        self.fn_name, self.fn_args = fn_name, fn_args
        self.options = options
        self.batch = batch
        self.progress = progress or Progress(header={})
        self.results: asyncio.Queue[NodeResult] = asyncio.Queue()
        self.fnc_ids: dict[str, str] = dict(self.progress.fnc_ids)
        self.on_call = on_call
        self.node_timeout_s = node_timeout_s
        self.launcher: Launcher | None = None
        self.stopped: str | None = None
        #: the nodes whose StartFunction this run sent (or is sending), by request_id
        self.sending: dict[str, str] = {}
        if on_call is not None:  # what a master that died had asked and not seen finish
            for name in self.progress.request_ids.keys() - self.progress.finished.keys():
                on_call(name, self.fnc_ids.get(name))

    async def all(
        self, clients: list[NodeClient], rollout: Rollout
    ) -> AsyncGenerator[NodeResult, None]:
        launcher = self.launcher = Launcher(
            rollout, self.deadline, self.one, self.results.put_nowait,
            resumes=lambda client: client.name in self.progress.request_ids,
        )  # fmt: skip
        launcher.stopped = self.stopped
        for finished in self.progress.finished.values():
            launcher.count(finished)
        launching = asyncio.create_task(launcher.run(clients), name="launch nodes")
        try:
            pending = {client.name for client in clients}
            while pending:
                result = await self.next_result()
                if result is None:
                    break
                pending.discard(result.node)
                yield result
            for name in sorted(pending):
                yield self.outstanding(name)
        finally:
            tasks = [launching, *launcher.tasks]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=_CANCEL_WAIT_S)
            if self.batch is not None:
                self.batch.close()

    async def one(self, client: NodeClient) -> NodeResult:
        """Call one node: whatever it raised is its result."""
        done = self.progress.finished.get(client.name)
        if done is not None:  # finished before the master died
            return done
        try:
            result = NodeResult(client.name, True, await self._call(client))
        except Exception as exc:
            result = NodeResult(client.name, False, error=exc)
        if self.batch is not None:
            self.batch.finished(result)
        return result

    async def _call(self, client: NodeClient) -> Any:
        fnc_id = self.fnc_ids.get(client.name)
        if fnc_id is not None:  # started before the master died: wait for it
            state = await resume_call(client, fnc_id, self._left(client.name, None),
                                      self.options, on_output=self.on_output)  # fmt: skip
        else:
            request_id = self.progress.request_ids.get(client.name) or self._new_key(client)
            self._check_stopped(client)
            asked = time.monotonic()
            if self.batch is not None:
                await self.batch.asked(client.name, request_id)
            self._check_stopped(client)  # stopped while its start was being recorded
            self.sending[client.name] = request_id
            if self.on_call is not None:
                self.on_call(client.name, None)
            state = await run_call(
                client, self.fn_name, self.fn_args, self._left(client.name, asked), self.options,
                request_id=request_id, on_progress=lambda s: self._started(client, s),
                on_output=self.on_output,
            )  # fmt: skip
            self._started(client, state)
        try:
            return outcome_of(state, client.name, self.node_timeout_s or self.deadline.timeout_s)
        except CallTimeout as exc:
            if self.node_timeout_s is not None:  # a job's call ends with its node's timeout
                exc.aborted = await send_abort(client, state.fnc_id)
            raise

    def _check_stopped(self, client: NodeClient) -> None:
        """A node not started yet is skipped once ``stopped`` is set (an abort), even
        with its start recorded (it was never sent); one whose start an earlier run
        recorded goes on (it may have reached its node: its true end is taken)."""
        if self.stopped is not None and client.name not in self.progress.request_ids:
            raise Skipped(f"not started: {self.stopped}", node=client.name)

    def _left(self, name: str, asked: float | None) -> float | None:
        """The time a node's call has: what is left of the fan-out's deadline, or (a job)
        of the node's timeout, counted from when its start was first recorded (a resumed
        call has what was left of it, not its whole timeout again) or else from
        ``asked`` (monotonic, before this run recorded it: the commit's time included)."""
        if self.node_timeout_s is None:
            return self.deadline.left_s()
        recorded = self.progress.asked.get(name)
        if recorded is not None:
            return max(0.0, recorded + self.node_timeout_s - time.time())
        if asked is None:
            return self.node_timeout_s
        return max(0.0, asked + self.node_timeout_s - time.monotonic())

    def _new_key(self, client: NodeClient) -> str:
        return new_request_id() if self.batch is None else self.batch.request_id(client.name)

    def _started(self, client: NodeClient, state: CallState) -> None:
        if client.name not in self.fnc_ids:
            self.fnc_ids[client.name] = state.fnc_id
            # a job's call that ended in its first answer: its end's record carries the
            # fnc_id (a write a node saved)
            ended_at_once = state.finished and self.node_timeout_s is not None
            if self.batch is not None and not ended_at_once:
                self.batch.started(client.name, state.fnc_id)
            if self.on_call is not None:
                self.on_call(client.name, state.fnc_id)

    async def next_result(self) -> NodeResult | None:
        left = self.deadline.left_s()
        try:
            async with asyncio.timeout(None if left is None else left + _GUARD_S):
                return await self.results.get()
        except TimeoutError:
            return None

    def outstanding(self, name: str) -> NodeResult:
        fnc_id, timeout = self.fnc_ids.get(name), self.deadline.timeout_s
        error: Exception = (
            CallTimeout(f"call {fnc_id} still running after the deadline of {timeout} s",
                        fnc_id=fnc_id, node=name)
            if fnc_id is not None
            else NodeTimeout(f"no answer by the deadline of {timeout} s", node=name)
        )  # fmt: skip
        return NodeResult(name, False, error=error)


#: one fan-out's run, for the jobs of ganeti-masterd (:mod:`masterd.jobs.runner`): the
#: same roll-out and records as call_many's, another journal
FanOutRun = _GatherRun


def _header(
    fn_name: str, fn_args: dict[str, Any] | None, timeout: float | None, options: CallOptions,
    rollout: Rollout, clients: list[NodeClient],
) -> dict[str, Any]:  # fmt: skip
    return {
        "fn_name": fn_name, "fn_args": fn_args or {}, "timeout": timeout,
        "wait_s": options.wait_s, "abort_after": options.abort_after_s,
        "window": rollout.window, "canary": rollout.canary,
        "max_failures": rollout.max_failures, "nodes": [client.name for client in clients],
    }  # fmt: skip


def _unique(nodes: Iterable[NodeClient]) -> list[NodeClient]:
    clients = list(nodes)
    for client in clients:
        check_client(client)
    counts = Counter(client.name for client in clients)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"nodes named more than once: {', '.join(duplicates)}")
    return clients
