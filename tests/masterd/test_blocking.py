"""masterd.blocking: the same calls from plain threads, results as they come."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from masterd import blocking
from masterd.node import Node
from masterd.options import CallOptions
from rpc_client.errors import FunctionFailed
from tests.helpers import NodeFactory


async def cluster_of(make_node: NodeFactory, delays: dict[str, float]) -> list[Node]:
    return [
        Node(name, "127.0.0.1", (await make_node(name, delay_s=delay)).port)
        for name, delay in delays.items()
    ]


async def test_eight_threads_call_at_once(make_node: NodeFactory) -> None:
    nodes = await cluster_of(make_node, {"a": 0, "b": 0})

    def work(cluster: blocking.Cluster, n: int) -> tuple[int, str]:
        node = "a" if n % 2 else "b"
        return cluster.call_function(node, "add", {"a": n, "b": 1000}, timeout=30), node

    def run_threads() -> list[tuple[int, str]]:
        with blocking.Cluster(nodes) as cluster, ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda n: work(cluster, n), range(8 * 5)))

    results = await asyncio_to_thread(run_threads)
    assert [value for value, _ in results] == [n + 1000 for n in range(40)]


async def test_call_many_yields_as_results_come_in(make_node: NodeFactory) -> None:
    nodes = await cluster_of(make_node, {"fast": 0, "slow": 2})

    def consume() -> list[tuple[str, float]]:
        seen = []
        began = time.monotonic()
        with blocking.Cluster(nodes) as cluster:
            for result in cluster.call_many(
                "node_behaviour", {}, 20, options=CallOptions(wait_s=1)
            ):
                assert result.ok
                seen.append((result.node, time.monotonic() - began))
        return seen

    seen = await asyncio_to_thread(consume)
    assert [name for name, _ in seen] == ["fast", "slow"]
    assert seen[0][1] < seen[1][1] - 1  # the fast one came out long before the slow one


async def test_errors_and_gather_through_the_blocking_api(make_node: NodeFactory) -> None:
    nodes = await cluster_of(make_node, {"a": 0})

    def calls() -> None:
        with blocking.Cluster(nodes) as cluster:
            with pytest.raises(FunctionFailed):
                cluster.call_function("a", "fail", {"message": "x"}, timeout=10)
            assert cluster.gather("echo", {"value": 1}, timeout=10).names("ok") == ["a"]
        assert not [t for t in threading.enumerate() if t.name == "masterd-loop"]

    await asyncio_to_thread(calls)


async def asyncio_to_thread(func):  # type: ignore[no-untyped-def]
    # the blocking API must not run on the test's own event loop thread
    import asyncio

    return await asyncio.wait_for(asyncio.to_thread(func), 60)
