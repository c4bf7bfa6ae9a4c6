"""ganeti-noded --master against a real ganeti-masterd: registration and liveness."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from masterd.local import LocalNode
from tests.helpers import eventually, get_text, metric, run_node
from tests.masterd.daemon.running import run_masterd, start_masterd
from tests.noded.master.running import (
    FUNCTIONS,
    node_with_master,
    run_call,
    start_node,
    wait_events,
    wait_state,
)


async def test_a_node_registers_and_is_alive(tmp_path: Path) -> None:
    async with (
        run_masterd(["--heartbeat-s", "0.5"], workdir=tmp_path / "m") as masterd,
        node_with_master([masterd.address], tmp_path / "n", "--labels", "rack1,ssd") as node,
    ):
        await wait_state(masterd, "node-a", "alive")
        listed = (await masterd.nodes())["node-a"]
        assert listed["port"] == node.port
        assert {"rack1", "ssd"} <= set(listed["labels"])
        starts = await wait_events(masterd, 1, ["node.start"])
        assert starts[0]["node"] == "node-a"
        _, page, _ = await get_text(node, "/metrics")
        assert metric(page, "noded_master_registered") == 1


@pytest.mark.slow
async def test_sigkill_makes_it_missing_and_a_restart_alive_again(tmp_path: Path) -> None:
    async with run_masterd(["--heartbeat-s", "0.5"], workdir=tmp_path / "m") as masterd:
        node = await start_node([masterd.address], tmp_path / "n")
        await wait_state(masterd, "node-a", "alive")
        first = (await masterd.nodes())["node-a"]["instance"]
        node.proc.kill()
        await node.wait_exit(10)
        await wait_state(masterd, "node-a", "missing")
        async with node_with_master([masterd.address], tmp_path / "n"):
            await wait_state(masterd, "node-a", "alive")
            restarted = await wait_events(masterd, 1, ["node.restarted"])
            assert restarted[0]["data"]["old_instance"] == first
            assert (await masterd.nodes())["node-a"]["instance"] != first


@pytest.mark.slow
async def test_the_first_master_dead_the_node_uses_the_second(tmp_path: Path) -> None:
    async with run_masterd(["--heartbeat-s", "0.5"], workdir=tmp_path / "m") as masterd:
        dead = "127.0.0.1:9"  # discard: nothing listens there
        async with node_with_master([dead, masterd.address], tmp_path / "n"):
            await wait_state(masterd, "node-a", "alive")
        # and the other way round (the first master is chosen at random)
        async with node_with_master([masterd.address, dead], tmp_path / "n"):
            await wait_state(masterd, "node-a", "alive")


async def test_with_no_master_reachable_the_node_serves_as_before(tmp_path: Path) -> None:
    args = ["--functions", FUNCTIONS, "--master", "127.0.0.1:9"]
    async with run_node(args, workdir=tmp_path / "n") as node:
        assert (await run_call(node, "add", {"a": 1, "b": 2})).result == 3
        assert (await run_call(node, "emit_events", {"count": 3})).result == 3
        assert node.proc.poll() is None
    assert node.proc.returncode == 0


async def test_stop_is_bounded_with_no_master(tmp_path: Path) -> None:
    node = await LocalNode.start(
        ["--functions", FUNCTIONS, "--master", "127.0.0.1:9"], workdir=tmp_path / "n"
    )
    assert await node.stop(timeout_s=15) == 0


@pytest.mark.slow
async def test_a_master_that_forgot_the_node_gets_it_registered_again(tmp_path: Path) -> None:
    """A master on a new store answers heartbeats ``reregister`` and Reports 409
    NotRegistered: the node registers again, and its events follow."""
    first = await start_masterd(["--heartbeat-s", "0.5"], tmp_path / "m1")
    second = None
    try:
        async with node_with_master([first.address], tmp_path / "n") as node:
            await wait_state(first, "node-a", "alive")
            await first.kill()
            second = await start_masterd(["--heartbeat-s", "0.5"], tmp_path / "m2",
                                         port=first.port)  # fmt: skip
            await wait_state(second, "node-a", "alive", timeout_s=60)
            state = await run_call(node, "emit_events", {"count": 2, "kind": "after"})
            arrived = await wait_events(second, 2, ["after"])
            assert {e["fnc_id"] for e in arrived} == {state.fnc_id}
    finally:
        await first.stop()
        if second is not None:
            await second.stop()


async def test_a_master_that_stops_is_logged_once_and_its_return_too(tmp_path: Path) -> None:
    """A refused connection is said as such (not "within 10 s", not a "node"), once
    however many heartbeats fail; ``master.reachable`` once it answers again."""
    masterd = await start_masterd(["--heartbeat-s", "0.3"], tmp_path / "m")
    try:
        async with node_with_master([masterd.address], tmp_path / "n") as node:
            await wait_state(masterd, "node-a", "alive")
            await masterd.stop()
            await eventually(lambda: "master.heartbeat_failed" in node.log_text(), 20.0)
            await asyncio.sleep(1.5)  # several more heartbeats fail
            masterd = await start_masterd(["--heartbeat-s", "0.3"], tmp_path / "m",
                                          port=masterd.port)  # fmt: skip
            await eventually(lambda: "master.reachable" in node.log_text(), 20.0)
            log = node.log_text()
    finally:
        await masterd.stop()
    failed = [line for line in log.splitlines() if "WARNING master.heartbeat_failed" in line]
    assert len(failed) == 1, failed
    assert "connection refused" in failed[0] and "is ganeti-masterd running" in failed[0]
    assert "within" not in failed[0] and "(node " not in failed[0]
    assert log.count("master.reachable") == 1


async def test_a_name_conflict_is_one_warning_while_its_age_grows(tmp_path: Path) -> None:
    async with (
        run_masterd(["--heartbeat-s", "0.5"], workdir=tmp_path / "m") as masterd,
        node_with_master([masterd.address], tmp_path / "n1"),
    ):
        await wait_state(masterd, "node-a", "alive")
        async with node_with_master([masterd.address], tmp_path / "n2") as second:
            await eventually(lambda: "master.register_failed" in second.log_text(), 20.0)
            await asyncio.sleep(3.0)  # several Registers refused, "heard from N s ago"
            log = second.log_text()
    refused = [line for line in log.splitlines() if "WARNING master.register_failed" in line]
    assert len(refused) == 1, refused
    assert f"master={masterd.address}" in refused[0]
