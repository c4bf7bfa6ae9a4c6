"""``call_many``: one function on many nodes, each node's result as it arrives.

Every node is named exactly once: a success, a remote failure, a transport failure, or,
for a node still outstanding when the deadline has passed, a :class:`CallTimeout` (with the
fnc_id if the call started) or a :class:`NodeTimeout`.  None is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from masterd.call import (
    DEFAULT_RETRY,
    DEFAULT_WAIT_S,
    LATE_S,
    CallOptions,
    Deadline,
    RetryPolicy,
    outcome_of,
    run_call,
)
from masterd.output import OutputCallback
from rpc_client.client import NodeClient
from rpc_client.errors import (
    CallTimeout,
    InsufficientStorage,
    NodeBusy,
    NodeShuttingDown,
    NodeTimeout,
    TransportError,
    WrongNode,
)

#: how long past the call deadline (itself within LATE_S) the gather waits for stragglers
_GUARD_S = LATE_S + 0.25
_CANCEL_WAIT_S = 5.0

Outcome = Literal["ok", "failed", "timed_out", "unreachable"]


@dataclass(frozen=True)
class NodeResult:
    """One node's answer: ``value`` if ``ok``, else the exception in ``error``."""

    node: str
    ok: bool
    value: Any = None
    error: BaseException | None = None

    @property
    def outcome(self) -> Outcome:
        if self.ok:
            return "ok"
        if isinstance(self.error, CallTimeout | NodeTimeout):
            return "timed_out"
        if isinstance(
            self.error,
            TransportError | WrongNode | NodeBusy | NodeShuttingDown | InsufficientStorage,
        ):
            return "unreachable"
        return "failed"


@dataclass
class GatherSummary:
    """Every node's result, and the node names by outcome."""

    results: dict[str, NodeResult] = field(default_factory=dict)

    def names(self, outcome: Outcome) -> list[str]:
        return sorted(name for name, r in self.results.items() if r.outcome == outcome)

    @property
    def all_ok(self) -> bool:
        return all(r.ok for r in self.results.values())

    def line(self) -> str:
        """``4 nodes: 2 ok, 1 failed (n3), 0 timed out, 1 unreachable (n4)``."""
        parts = []
        for outcome, words in (
            ("ok", "ok"),
            ("failed", "failed"),
            ("timed_out", "timed out"),
            ("unreachable", "unreachable"),
        ):
            names = self.names(outcome)  # type: ignore[arg-type]
            shown = f" ({', '.join(names)})" if names and outcome != "ok" else ""
            parts.append(f"{len(names)} {words}{shown}")
        return f"{len(self.results)} nodes: " + ", ".join(parts)


async def call_many(
    nodes: Iterable[NodeClient],
    fn_name: str,
    fn_args: dict[str, Any] | None = None,
    timeout: float | None = None,
    *,
    wait_s: float = DEFAULT_WAIT_S,
    concurrency: int | None = None,
    abort_after: float | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    on_output: OutputCallback | None = None,
) -> AsyncGenerator[NodeResult, None]:
    """Call ``fn_name`` on every node at once; yield each :class:`NodeResult` as it comes.

    With ``on_output``, every node's output is followed: each :class:`OutputEvent`, its
    ``node`` the node's name, is passed to it as it arrives.

    Leaving the loop early cancels the calls still running here (use
    ``contextlib.aclosing`` to have that happen at once rather than when the generator is
    collected); the functions already started on the nodes are not aborted.
    """
    clients = _unique(nodes)
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be >= 1 or None, got {concurrency}")
    deadline = Deadline(timeout)
    options = CallOptions(wait_s=wait_s, abort_after=abort_after, retry=retry)
    run = _GatherRun(deadline, concurrency, fn_name, fn_args, options, on_output)
    tasks = [asyncio.create_task(run.one(client), name=f"call {client.name}") for client in clients]
    try:
        pending = {client.name for client in clients}
        while pending:
            result = await run.next_result(deadline)
            if result is None:
                break
            pending.discard(result.node)
            yield result
        for name in sorted(pending):
            yield run.outstanding(name, timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=_CANCEL_WAIT_S)


async def gather(
    nodes: Iterable[NodeClient], fn_name: str, fn_args: dict[str, Any] | None = None,
    timeout: float | None = None, **kwargs: Any,
) -> GatherSummary:  # fmt: skip
    """Collect :func:`call_many` into a :class:`GatherSummary`."""
    summary = GatherSummary()
    async with contextlib.aclosing(call_many(nodes, fn_name, fn_args, timeout, **kwargs)) as it:
        async for result in it:
            summary.results[result.node] = result
    return summary


class _GatherRun:
    """The shared state of one call_many: its results queue and what each node started."""

    def __init__(
        self,
        deadline: Deadline,
        concurrency: int | None,
        fn_name: str,
        fn_args: dict[str, Any] | None,
        options: CallOptions,
        on_output: OutputCallback | None = None,
    ) -> None:
        self.on_output = on_output
        self.deadline = deadline
        self.concurrency = concurrency
        self.limit = asyncio.Semaphore(concurrency) if concurrency else None
        self.fn_name, self.fn_args = fn_name, fn_args
        self.options = options
        self.results: asyncio.Queue[NodeResult] = asyncio.Queue()
        self.fnc_ids: dict[str, str] = {}

    async def one(self, client: NodeClient) -> None:
        try:
            value = await self._call(client)
        except Exception as exc:  # whatever one node raised is that node's result
            self.results.put_nowait(NodeResult(client.name, False, error=exc))
        else:
            self.results.put_nowait(NodeResult(client.name, True, value))

    async def _call(self, client: NodeClient) -> Any:
        async with self._slot(client):
            state = await run_call(
                client, self.fn_name, self.fn_args, self.deadline.left_s(), self.options,
                on_progress=lambda s: self.fnc_ids.__setitem__(client.name, s.fnc_id),
                on_output=self.on_output,
            )  # fmt: skip
        return outcome_of(state, client.name, self.deadline.timeout_s)

    @contextlib.asynccontextmanager
    async def _slot(self, client: NodeClient) -> AsyncIterator[None]:
        if self.limit is None:
            yield
            return
        try:
            await asyncio.wait_for(self.limit.acquire(), self.deadline.left_s())
        except TimeoutError:
            raise CallTimeout(
                "not started before the deadline: other nodes held all "
                f"{self.concurrency} concurrent calls",
                fnc_id=None,
                node=client.name,
            ) from None
        try:
            yield
        finally:
            self.limit.release()

    async def next_result(self, deadline: Deadline) -> NodeResult | None:
        left = deadline.left_s()
        try:
            return await asyncio.wait_for(
                self.results.get(), None if left is None else left + _GUARD_S
            )
        except TimeoutError:
            return None

    def outstanding(self, name: str, timeout: float | None) -> NodeResult:
        fnc_id = self.fnc_ids.get(name)
        error: Exception = (
            CallTimeout(f"call {fnc_id} still running after the deadline of {timeout} s",
                        fnc_id=fnc_id, node=name)
            if fnc_id is not None
            else NodeTimeout(f"no answer by the deadline of {timeout} s", node=name)
        )  # fmt: skip
        return NodeResult(name, False, error=error)


def _unique(nodes: Iterable[NodeClient]) -> list[NodeClient]:
    clients = list(nodes)
    names = [client.name for client in clients]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"nodes named more than once: {', '.join(duplicates)}")
    return clients
