"""Rolling a call out over real daemons: a sliding window, canaries, a failure budget,
labels, and a fan-out resumed after its master was killed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from masterd.cluster import Cluster
from masterd.fanout import call_many, gather
from masterd.local import LocalNode
from masterd.node import Node
from masterd.options import Rollout
from rpc_client.errors import FunctionFailed, Skipped
from tests.helpers import eventually, named_test_nodes, run_node


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LocalNode]]:
    """``good`` answers after 0.2 s, ``slow`` after 2 s, ``bad`` fails at once."""
    envs = {"good": {"TEST_DELAY_S": "0.2"}, "slow": {"TEST_DELAY_S": "2"},
            "bad": {"TEST_FAIL": "1"}}  # fmt: skip
    with named_test_nodes(tmp_path_factory, envs) as started:
        yield started


@contextlib.asynccontextmanager
async def cluster_of(
    daemons: dict[str, LocalNode],
    *nodes: tuple[str, str],
    labels: dict[str, list[str]] | None = None,
) -> AsyncIterator[Cluster]:
    """A cluster of (node name, daemon) pairs: several nodes may share a daemon."""
    listed = [
        Node(name, "127.0.0.1", daemons[daemon].port, labels=tuple((labels or {}).get(name, [])))
        for name, daemon in nodes
    ]
    async with Cluster(listed) as cluster:
        yield cluster


async def test_the_window_slides_and_bounds_the_calls_in_flight(
    daemons: dict[str, LocalNode], tmp_path: Path
) -> None:
    nodes = [(f"n{i}", "good") for i in range(6)]
    async with cluster_of(daemons, *nodes) as cluster:
        summary = await cluster.gather(
            "count_concurrent",
            {"directory": str(tmp_path), "seconds": 0.3},
            30,
            rollout=Rollout(window=2),
        )
    assert summary.all_ok and len(summary.results) == 6
    assert max(result.value for result in summary.results.values()) <= 2
    assert max(result.value for result in summary.results.values()) == 2
    # sliding, not batches: the quick nodes go on one after another beside the slow one
    async with cluster_of(daemons, ("slow", "slow"), *[(f"q{i}", "good") for i in range(3)]) as c:
        order = [
            r.node async for r in c.call_many("node_behaviour", {}, 30, rollout=Rollout(window=2))
        ]
    assert order[-1] == "slow"


async def test_a_failed_canary_skips_every_other_node(daemons: dict[str, LocalNode]) -> None:
    nodes = [("canary", "bad"), ("n1", "good"), ("n2", "good")]
    async with cluster_of(daemons, *nodes) as cluster:
        summary = await cluster.gather("node_behaviour", {}, 30, rollout=Rollout(canary=1))
    assert isinstance(summary.results["canary"].error, FunctionFailed)
    for name in ("n1", "n2"):
        error = summary.results[name].error
        assert isinstance(error, Skipped)
        assert "not started: the canary failed on canary" in str(error)
    assert summary.names("skipped") == ["n1", "n2"]
    assert summary.line() == "3 nodes: 0 ok, 1 failed (canary), 0 timed out, 0 unreachable, " \
        "2 skipped (n1, n2)"  # fmt: skip


async def test_the_rest_start_once_every_canary_succeeded(daemons: dict[str, LocalNode]) -> None:
    nodes = [("c1", "good"), ("c2", "good"), ("n1", "good"), ("n2", "bad")]
    async with cluster_of(daemons, *nodes) as cluster:
        order = [
            r.node
            async for r in cluster.call_many("node_behaviour", {}, 30, rollout=Rollout(canary=2))
        ]
    assert set(order[:2]) == {"c1", "c2"} and set(order[2:]) == {"n1", "n2"}


async def test_past_the_failure_budget_no_further_node_starts(
    daemons: dict[str, LocalNode], tmp_path: Path
) -> None:
    count = tmp_path / "count"
    nodes = [("b1", "bad"), ("b2", "bad"), ("b3", "bad"), ("g1", "good")]
    async with cluster_of(daemons, *nodes) as cluster:
        summary = await cluster.gather(
            "node_behaviour",
            {"count_path": str(count)},
            30,
            rollout=Rollout(window=1, max_failures=1),
        )
    assert summary.names("failed") == ["b1", "b2"]
    assert summary.names("skipped") == ["b3", "g1"]
    assert "2 nodes failed, more than max_failures=1" in str(summary.results["g1"].error)
    assert count.read_text().split() == ["bad", "bad"]  # b3 and g1 never ran


async def test_calls_already_running_finish_when_the_budget_is_spent(
    daemons: dict[str, LocalNode],
) -> None:
    nodes = [("slow", "slow"), ("b1", "bad"), ("g1", "good")]
    async with cluster_of(daemons, *nodes) as cluster:
        summary = await cluster.gather(
            "node_behaviour", {}, 30, rollout=Rollout(window=2, max_failures=0)
        )
    assert summary.results["slow"].value == "slow"  # started before b1 failed: it finished
    assert summary.names("skipped") == ["g1"]


async def test_nodes_are_chosen_by_labels(daemons: dict[str, LocalNode]) -> None:
    labels = {"n1": ["rack1", "db"], "n2": ["rack1"], "n3": ["rack2", "db"]}
    nodes = [("n1", "good"), ("n2", "good"), ("n3", "good")]
    async with cluster_of(daemons, *nodes, labels=labels) as cluster:
        assert [n.name for n in cluster.select("db")] == ["n1", "n3"]
        assert [n.name for n in cluster.select("rack1", "db")] == ["n1"]
        assert [n.name for n in cluster.select()] == ["n1", "n2", "n3"]
        summary = await cluster.gather("node_behaviour", {}, 30, nodes=cluster.select("rack1"))
    assert sorted(summary.results) == ["n1", "n2"]


async def test_bad_rollout_options_are_refused() -> None:
    refused: list[dict[str, Any]] = [{"window": 0}, {"canary": -1}, {"max_failures": -1}]
    for fields in refused:
        with pytest.raises(ValueError):
            Rollout(**fields)
    with pytest.raises(ValueError, match="canary=1 is more than the fan-out's 0 nodes"):
        await gather([], "echo", {}, 1, rollout=Rollout(canary=1))
    assert [r async for r in call_many([], "echo", {}, 1)] == []


async def rpc_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.slow
async def test_a_fan_out_resumed_after_its_master_was_killed_runs_each_node_once(
    tmp_path: Path,
) -> None:
    count, batch = tmp_path / "count", tmp_path / "batch.jsonl"
    async with contextlib.AsyncExitStack() as stack:
        entries = []
        for name in ("n1", "n2", "n3", "n4"):
            env = {"TEST_NAME": name, "TEST_DELAY_S": "0.6"}
            daemon = await stack.enter_async_context(
                run_node(["--name", name], env=env, workdir=tmp_path / name)
            )
            entries.append(
                f'[[node]]\nname = "{name}"\naddress = "127.0.0.1"\nport = {daemon.port}\n'
                f'labels = ["rack{1 + (name > "n2")}"]\n'
            )
        nodes = tmp_path / "nodes.toml"
        nodes.write_text("\n".join(entries))
        args = ["--nodes", str(nodes), "gather", "node_behaviour"]
        master = await rpc_cli(*args, f'{{"count_path": "{count}"}}', "--window", "1",
                               "--wait", "0.2", "--batch-file", str(batch))  # fmt: skip
        # killed while the third node runs its call, its fnc_id written down
        await eventually(lambda: batch.exists() and '"node":"n3","fnc_id"' in batch.read_text())
        master.send_signal(signal.SIGKILL)
        await asyncio.wait_for(master.wait(), 10)
        resumed = await rpc_cli("--nodes", str(nodes), "gather", "--resume", str(batch))
        out, err = await asyncio.wait_for(resumed.communicate(), 60)
        assert resumed.returncode == 0, err.decode()
        assert "4 nodes: 4 ok, 0 failed, 0 timed out, 0 unreachable" in out.decode()
        assert sorted(count.read_text().split()) == ["n1", "n2", "n3", "n4"]
        listed = await rpc_cli("--nodes", str(nodes), "nodes")
        out, _ = await asyncio.wait_for(listed.communicate(), 30)
        assert [line.split()[-1] for line in out.decode().splitlines()] == [
            "rack1", "rack1", "rack2", "rack2",
        ]  # fmt: skip
        labelled = await rpc_cli(*args, "--labels", "rack2", "--canary", "1")
        out, _ = await asyncio.wait_for(labelled.communicate(), 60)
        assert "2 nodes: 2 ok" in out.decode()
