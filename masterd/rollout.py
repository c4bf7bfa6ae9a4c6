"""How a fan-out starts its nodes: a sliding window, canaries first, a failure budget.

The nodes start in the order given.  With ``window`` N at most N calls are in flight,
and the next node starts as soon as one finishes.  With ``canary`` K the first K nodes
run first, alone, and the rest start only if all K succeeded.  With ``max_failures`` M,
once more than M nodes have failed (failed, timed out or unreachable) no further node
starts; calls already running finish normally.  Every node not started is named once,
with :class:`Skipped`.  The settings are a :class:`masterd.options.Rollout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from masterd.call import Deadline
from masterd.options import Rollout
from masterd.results import NodeResult, counted
from rpc_client.client import NodeClient
from rpc_client.errors import CallTimeout, Skipped


class Launcher:
    """Starts one task per node, in order, within a :class:`Rollout`; reports every
    node's result, those it never started included."""

    def __init__(
        self,
        rollout: Rollout,
        deadline: Deadline,
        call: Callable[[NodeClient], Awaitable[NodeResult]],
        report: Callable[[NodeResult], None],
        resumes: Callable[[NodeClient], bool] | None = None,
    ) -> None:
        self._rollout = rollout
        #: a node whose start an earlier run recorded goes on even once stopped (it
        #: may be running: it is waited for, never taken for skipped)
        self._resumes = resumes or (lambda _client: False)
        self._deadline = deadline
        self._call = call
        self._report = report
        self._slots = asyncio.Semaphore(rollout.window) if rollout.window else None
        self.failures = 0
        self.stopped: str | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def count(self, result: NodeResult) -> None:
        """Take a result already known (a resumed fan-out's) into the budget."""
        if not result.ok and not isinstance(result.error, Skipped):
            self.failures += 1
            limit = self._rollout.max_failures
            if limit is not None and self.failures > limit and self.stopped is None:
                failed = counted(self.failures, "node")
                self.stopped = f"{failed} failed, more than max_failures={limit}"

    async def run(self, clients: Sequence[NodeClient]) -> None:
        canaries = clients[: self._rollout.canary]
        if canaries:
            began = len(self.tasks)
            results: dict[str, NodeResult] = {}
            await self._launch(canaries, results)
            await asyncio.gather(*self.tasks[began:], return_exceptions=True)
            failed = [c.name for c in canaries if c.name in results and not results[c.name].ok]
            if failed and self.stopped is None:
                self.stopped = f"the canary failed on {', '.join(failed)}"
        await self._launch(clients[len(canaries) :], None)

    async def _launch(
        self, clients: Sequence[NodeClient], results: dict[str, NodeResult] | None
    ) -> None:
        for index, client in enumerate(clients):
            if self.stopped is None and not await self._take_slot():
                for late in clients[index:]:
                    self._report(_not_started(late, self._rollout.window))
                return
            if self.stopped is not None and not self._resumes(client):
                self._release()
                self._report(_skipped(client, self.stopped))
                continue
            self.tasks.append(
                asyncio.create_task(self._one(client, results), name=f"call {client.name}")
            )

    async def _one(self, client: NodeClient, results: dict[str, NodeResult] | None) -> None:
        try:
            result = await self._call(client)
        finally:
            self._release()
        if results is not None:
            results[client.name] = result
        self.count(result)
        self._report(result)

    async def _take_slot(self) -> bool:
        """False if the deadline passed before a slot was free."""
        if self._slots is None:
            return True
        try:
            await asyncio.wait_for(self._slots.acquire(), self._deadline.left_s())
        except TimeoutError:
            return False
        return True

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()


def _skipped(client: NodeClient, why: str) -> NodeResult:
    error = Skipped(f"not started: {why}", node=client.name)
    return NodeResult(client.name, False, error=error)


def _not_started(client: NodeClient, window: int | None) -> NodeResult:
    error = CallTimeout(
        f"not started before the deadline: other nodes held all {window} places of the window",
        fnc_id=None,
        node=client.name,
    )
    return NodeResult(client.name, False, error=error)
