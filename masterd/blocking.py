"""The master side for programs that are not async, and for threads of ones that are.

``blocking.Cluster`` has the calls of :class:`masterd.cluster.Cluster` as plain methods,
``blocking.MasterClient`` those of :class:`masterd.master_client.MasterClient`.
They run on one event loop in a background thread, so any number of threads may call
them at once; ``call_many`` returns an iterator that yields results as they come in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

from masterd import cluster as async_cluster
from masterd.call import CallFunctionKeywords
from masterd.cluster import ClusterKeywords
from masterd.fanout import CallManyKeywords, GatherSummary, NodeResult, ResumeKeywords
from masterd.follow_output import FollowKeywords, follow
from masterd.job_state import JobResultItem, JobState
from masterd.master_client import EventPage, ListedNode, MasterEvent, SubmitJobKeywords
from masterd.master_client import MasterClient as AsyncMasterClient
from masterd.node import Node
from masterd.options import without_old_keywords
from masterd.output_events import OutputEvent
from rpc_client.master_protocol import MASTER_PORT

T = TypeVar("T")

_DONE = object()
_POLL_S = 0.5
_STOP_TIMEOUT_S = 10.0


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="masterd-loop", daemon=True
        )
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """The items of the async iterator ``make()`` runs in the loop, here as they come;
        leaving early cancels it."""
        items: queue.Queue[Any] = queue.Queue()
        pump = self.submit(self._pump(items, make))
        try:
            while (item := self._next(items, pump)) is not _DONE:
                yield item
        finally:
            pump.cancel()

    @staticmethod
    async def _pump(items: queue.Queue[Any], make: Callable[[], AsyncIterator[Any]]) -> None:
        try:
            async for item in make():
                items.put(item)
        finally:
            items.put(_DONE)

    @staticmethod
    def _next(results: queue.Queue[Any], pump: concurrent.futures.Future[None]) -> Any:
        while True:
            try:
                return results.get(timeout=_POLL_S)
            except queue.Empty:
                if pump.done() and results.empty():
                    pump.result()  # raises what stopped the pump, if anything
                    return _DONE

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(_STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self.loop.close()


class Cluster:
    """A blocking :class:`masterd.cluster.Cluster`; close it (or use ``with``)."""

    def __init__(self, nodes: Iterable[Node], **kwargs: Unpack[ClusterKeywords]) -> None:
        self._cluster = async_cluster.Cluster(nodes, **kwargs)
        self._loop = _LoopThread()

    @classmethod
    def from_file(cls, path: Path | str, **kwargs: Unpack[ClusterKeywords]) -> Cluster:
        return cls(async_cluster.load_nodes(path), **kwargs)

    @property
    def nodes(self) -> list[Node]:
        return self._cluster.nodes

    def node(self, name_or_uuid: str) -> Node:
        return self._cluster.node(name_or_uuid)

    def call_function(
        self,
        node: Node | str,
        fn_name: str,
        fn_args: dict[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Unpack[CallFunctionKeywords],
    ) -> Any:
        """Run a function on one node; see :func:`masterd.call.call_function`."""
        given = without_old_keywords("call_function", kwargs, takes="call")
        return self._loop.run(self._cluster.call_function(node, fn_name, fn_args, timeout, **given))

    def gather(
        self,
        fn_name: str,
        fn_args: dict[str, Any] | None = None,
        timeout: float | None = None,
        *,
        nodes: Iterable[Node | str] | None = None,
        **kwargs: Unpack[CallManyKeywords],
    ) -> GatherSummary:
        """Every node's result in a :class:`GatherSummary`; see
        :func:`masterd.fanout.call_many` for the keywords."""
        given = without_old_keywords("gather", kwargs)
        return self._loop.run(self._cluster.gather(fn_name, fn_args, timeout, nodes=nodes, **given))

    def call_many(
        self,
        fn_name: str,
        fn_args: dict[str, Any] | None = None,
        timeout: float | None = None,
        *,
        nodes: Iterable[Node | str] | None = None,
        **kwargs: Unpack[CallManyKeywords],
    ) -> Iterator[NodeResult]:
        """Yield each node's :class:`NodeResult` as it arrives; leaving early cancels the rest.

        An ``on_output`` callback runs in the background loop's thread."""
        given = without_old_keywords("call_many", kwargs)
        yield from self._iterate(
            lambda: self._cluster.call_many(fn_name, fn_args, timeout, nodes=nodes, **given)
        )

    def resume(
        self, batch_file: Path | str, **kwargs: Unpack[ResumeKeywords]
    ) -> Iterator[NodeResult]:
        """Go on with a fan-out whose master died; see :func:`masterd.fanout.resume`."""
        yield from self._iterate(lambda: self._cluster.resume(batch_file, **kwargs))

    def select(self, *labels: str) -> list[Node]:
        """The nodes carrying every one of ``labels``; see :meth:`Cluster.select`."""
        return self._cluster.select(*labels)

    def follow(
        self, node: Node | str, fnc_id: str, from_: int = 0, timeout: float | None = None,
        **kwargs: Unpack[FollowKeywords],
    ) -> Iterator[OutputEvent]:  # fmt: skip
        """Yield each :class:`OutputEvent` of a call already started, as it arrives, until
        it finished and its output is read; see :func:`masterd.follow_output.follow`."""
        given = without_old_keywords("follow", kwargs, takes="wait")
        yield from self._iterate(
            lambda: follow(self._cluster.client(node), fnc_id, from_, timeout, **given)
        )

    def _iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        return self._loop.iterate(make)

    def close(self) -> None:
        """Close the connections and stop the background loop."""
        try:
            self._loop.submit(self._cluster.close()).result(_STOP_TIMEOUT_S)
        finally:
            self._loop.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MasterClient:
    """A blocking :class:`masterd.master_client.MasterClient`; close it (or use ``with``)."""

    def __init__(self, address: str, port: int = MASTER_PORT, **kwargs: Any) -> None:
        self._loop = _LoopThread()
        try:
            self._client = self._loop.run(_make_master_client(address, port, **kwargs))
        except BaseException:  # a bad TLS file, say: no thread left behind
            self._loop.stop()
            raise

    def nodes(self) -> list[ListedNode]:
        """ListNodes; see :meth:`masterd.master_client.MasterClient.nodes`."""
        return self._loop.run(self._client.nodes())

    def events(self, from_: int | None = 0, **kwargs: Any) -> EventPage:
        """One WaitForEvents; see :meth:`masterd.master_client.MasterClient.events`."""
        return self._loop.run(self._client.events(from_, **kwargs))

    def follow_events(self, from_: int | None = None, **kwargs: Any) -> Iterator[MasterEvent]:
        """Yield every event from ``from_`` on as it is stored, for ever; leaving the loop
        stops it.  See :meth:`masterd.master_client.MasterClient.follow_events`."""
        return self._loop.iterate(lambda: self._client.follow_events(from_, **kwargs))

    def submit_job(self, fn_name: str, fn_args: dict[str, Any] | None = None,
                   **kwargs: Unpack[SubmitJobKeywords]) -> JobState:  # fmt: skip
        """SubmitJob; see :meth:`masterd.master_client.MasterClient.submit_job`."""
        given = without_old_keywords("submit_job", kwargs, takes="rollout")
        return self._loop.run(self._client.submit_job(fn_name, fn_args, **given))

    def wait_job(self, job_id: str, **kwargs: Any) -> JobState:
        """WaitForJob; see :meth:`masterd.master_client.MasterClient.wait_job`."""
        return self._loop.run(self._client.wait_job(job_id, **kwargs))

    def follow_job(self, job_id: str, **kwargs: Any) -> Iterator[JobResultItem]:
        """Yield each node's result as it comes, until the job ends."""
        return self._loop.iterate(lambda: self._client.follow_job(job_id, **kwargs))

    def abort_job(self, job_id: str, *, calls: bool = False) -> JobState:
        """AbortJob; see :meth:`masterd.master_client.MasterClient.abort_job`."""
        return self._loop.run(self._client.abort_job(job_id, calls=calls))

    def jobs(self, limit: int | None = None) -> list[JobState]:
        """ListJobs, newest first."""
        return self._loop.run(self._client.jobs(limit))

    def close(self) -> None:
        """Close the connection and stop the background loop."""
        try:
            self._loop.submit(self._client.close()).result(_STOP_TIMEOUT_S)
        finally:
            self._loop.stop()

    def __enter__(self) -> MasterClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _make_master_client(address: str, port: int, **kwargs: Any) -> AsyncMasterClient:
    """Made in the loop's thread: what it makes (its pool) belongs to that loop."""
    return AsyncMasterClient(address, port, **kwargs)
