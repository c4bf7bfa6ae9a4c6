"""call_many over good and bad nodes: every node named exactly once, fast ones first."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from masterd.cluster import Cluster
from masterd.fanout import call_many, gather
from masterd.local import free_port
from masterd.node import Node
from masterd.options import CallOptions, Rollout
from masterd.results import GatherSummary, NodeResult
from rpc_client.client import ClientTimeouts, NodeClient
from rpc_client.errors import (
    CallTimeout,
    FunctionFailed,
    NodeTimeout,
    NodeUnreachable,
    ProtocolError,
)
from tests.fakes import fake_node, never_answers, speaks_garbage
from tests.helpers import NodeFactory


@pytest.mark.slow
async def test_every_node_is_named_once_and_fast_nodes_come_first(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    fast = await make_node("fast", host="127.0.0.1", delay_s=0.1)
    slow = await make_node("slow", host="127.0.0.2", delay_s=1.5)
    failing = await make_node("failing", host="127.0.0.3", fail=True)
    too_slow = await make_node("too-slow", delay_s=30)
    async with contextlib.AsyncExitStack() as stack:
        silent = await stack.enter_async_context(fake_node(never_answers))
        garbage = await stack.enter_async_context(fake_node(speaks_garbage))
        nodes = [
            Node("slow", "127.0.0.2", slow.port), Node("fast", "127.0.0.1", fast.port),
            Node("failing", "127.0.0.3", failing.port),
            Node("too-slow", "127.0.0.1", too_slow.port),
            Node("dead", "127.0.0.1", free_port()), Node("silent", "127.0.0.1", silent),
            Node("garbage", "127.0.0.1", garbage),
        ]  # fmt: skip
        runs = tmp_path / "runs"
        async with Cluster(nodes) as cluster:
            began = time.monotonic()
            order, results = [], {}
            async for result in cluster.call_many(
                "node_behaviour",
                {"count_path": str(runs)},
                timeout=3,
                options=CallOptions(wait_s=1),
            ):
                order.append(result.node)
                results[result.node] = result
            took = time.monotonic() - began
    assert sorted(order) == sorted(n.name for n in nodes)  # each exactly once
    assert took < 3 + 1.5
    assert results["fast"].ok and results["fast"].value == "fast"
    assert results["slow"].ok and results["slow"].value == "slow"
    assert order.index("fast") < order.index("slow")
    assert isinstance(results["failing"].error, FunctionFailed)
    assert results["failing"].error.type == "OSError"
    assert isinstance(results["too-slow"].error, CallTimeout)
    assert results["too-slow"].error.fnc_id
    assert isinstance(results["dead"].error, NodeUnreachable)
    assert isinstance(results["silent"].error, NodeTimeout)
    assert isinstance(results["garbage"].error, ProtocolError)
    outcomes = {name: r.outcome for name, r in results.items()}
    assert outcomes == {
        "fast": "ok",
        "slow": "ok",
        "failing": "failed",
        "too-slow": "timed_out",
        "dead": "unreachable",
        "silent": "timed_out",
        "garbage": "unreachable",
    }
    # the function ran exactly once on each node that got the call
    assert sorted(runs.read_text().split()) == ["failing", "fast", "slow", "too-slow"]


async def test_gather_summary_names_nodes_by_outcome(make_node: NodeFactory) -> None:
    good = await make_node("good")
    bad = await make_node("bad", fail=True)
    nodes = [
        Node("good", "127.0.0.1", good.port),
        Node("bad", "127.0.0.1", bad.port),
        Node("gone", "127.0.0.1", free_port()),
    ]
    async with Cluster(nodes) as cluster:
        summary = await cluster.gather("node_behaviour", {}, timeout=10)
    assert summary.names("ok") == ["good"]
    assert summary.names("failed") == ["bad"]
    assert summary.names("unreachable") == ["gone"]
    assert not summary.all_ok
    assert summary.line() == "3 nodes: 1 ok, 1 failed (bad), 0 timed out, 1 unreachable (gone)"


async def test_concurrency_limits_calls_and_late_starters_time_out(
    make_node: NodeFactory,
) -> None:
    daemons = [await make_node(f"n{i}", delay_s=0.8) for i in range(3)]
    clients = [NodeClient("127.0.0.1", d.port, name=f"n{i}") for i, d in enumerate(daemons)]
    try:
        summary = await gather(clients, "node_behaviour", {}, 1.2, rollout=Rollout(window=1))
    finally:
        for client in clients:
            await client.close()
    assert len(summary.names("ok")) == 1
    timed_out = [summary.results[name].error for name in summary.names("timed_out")]
    assert len(timed_out) == 2
    assert all(isinstance(e, CallTimeout) for e in timed_out)


async def test_leaving_the_loop_early_cancels_the_rest(make_node: NodeFactory) -> None:
    fast = await make_node("fast")
    slow = await make_node("slow", delay_s=20)
    clients = [
        NodeClient("127.0.0.1", fast.port, name="fast"),
        NodeClient("127.0.0.1", slow.port, name="slow"),
    ]
    try:
        before = len(asyncio.all_tasks())
        async with contextlib.aclosing(
            call_many(clients, "node_behaviour", {}, timeout=30, options=CallOptions(wait_s=1))
        ) as results:
            async for result in results:
                assert result.node == "fast"
                break
        assert len(asyncio.all_tasks()) == before
    finally:
        for client in clients:
            await client.close()


async def test_a_node_named_twice_is_refused() -> None:
    clients = [NodeClient("127.0.0.1", 1, name="a"), NodeClient("127.0.0.1", 2, name="a")]
    with pytest.raises(ValueError, match="more than once: a"):
        await gather(clients, "echo", {"value": 1}, timeout=1)


async def test_a_silent_node_is_bounded_even_with_a_long_margin() -> None:
    slow_margin = ClientTimeouts(margin_s=30)
    async with fake_node(never_answers) as port:
        client = NodeClient("127.0.0.1", port, name="silent", timeouts=slow_margin)
        began = time.monotonic()
        summary = await gather([client], "echo", {"value": 1}, timeout=1)
        await client.close()
    assert summary.names("timed_out") == ["silent"]
    assert time.monotonic() - began < 1 + 1.5


def test_a_summary_of_one_node_says_node() -> None:
    summary = GatherSummary({"n1": NodeResult("n1", True, 1)})
    assert summary.line() == "1 node: 1 ok, 0 failed, 0 timed out, 0 unreachable"
