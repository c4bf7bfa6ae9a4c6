"""Events from a node to a real ganeti-masterd: emit, call.finish, node.start/stop, and
the spool while the master is down."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import eventually, get_text, metric
from tests.masterd.daemon.running import run_masterd, start_masterd, until
from tests.noded.master.running import (
    events_of,
    node_with_master,
    run_call,
    start_node,
    wait_events,
    wait_state,
)

HEARTBEAT = ["--heartbeat-s", "0.5"]


async def test_emitted_events_arrive_with_their_fnc_id(tmp_path: Path) -> None:
    async with (
        run_masterd(HEARTBEAT, workdir=tmp_path / "m") as masterd,
        node_with_master([masterd.address], tmp_path / "n") as node,
    ):
        await wait_state(masterd, "node-a", "alive")
        state = await run_call(node, "emit_events", {"count": 3, "kind": "disk.replacing"})
        arrived = await wait_events(masterd, 3, ["disk.*"])
        assert [e["data"] for e in arrived] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert {e["fnc_id"] for e in arrived} == {state.fnc_id}
        assert {e["node"] for e in arrived} == {"node-a"}
        finish = (await wait_events(masterd, 1, ["call.finish"]))[0]
        assert finish["fnc_id"] == state.fnc_id
        assert finish["data"]["fnc_id"] == state.fnc_id
        assert finish["data"]["fn_name"] == "emit_events"
        assert finish["data"]["outcome"] == "ok"
        assert finish["data"]["duration_s"] >= 0

        async def all_delivered() -> bool:  # counted once the node has the acknowledgement
            _, page, _ = await get_text(node, "/metrics")
            return metric(page, "noded_master_events_delivered_total") >= 5

        await until(all_delivered)


async def test_call_finish_says_the_error_type(tmp_path: Path) -> None:
    async with (
        run_masterd(HEARTBEAT, workdir=tmp_path / "m") as masterd,
        node_with_master([masterd.address], tmp_path / "n") as node,
    ):
        state = await run_call(node, "fail", {"message": "no"})
        finish = (await wait_events(masterd, 1, ["call.finish"]))[0]
        assert finish["fnc_id"] == state.fnc_id
        assert finish["data"]["outcome"] == state.error["type"] != "ok"  # type: ignore[index]


async def test_a_clean_stop_delivers_node_stop(tmp_path: Path) -> None:
    async with run_masterd(HEARTBEAT, workdir=tmp_path / "m") as masterd:
        async with node_with_master([masterd.address], tmp_path / "n"):
            await wait_events(masterd, 1, ["node.start"])
        stops = await wait_events(masterd, 1, ["node.stop"], timeout_s=5)
        assert stops[0]["node"] == "node-a"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stopped", "killed"])
async def test_events_while_the_master_is_down_arrive_when_it_is_back(
    tmp_path: Path, how: str
) -> None:
    masterd = await start_masterd(HEARTBEAT, tmp_path / "m")
    try:
        async with node_with_master([masterd.address], tmp_path / "n") as node:
            await wait_state(masterd, "node-a", "alive")
            await (masterd.stop() if how == "stopped" else masterd.kill())
            state = await run_call(node, "emit_events", {"count": 5, "kind": "while.down"})
            masterd = await start_masterd(HEARTBEAT, tmp_path / "m", port=masterd.port)
            arrived = await wait_events(masterd, 5, ["while.down"], timeout_s=30)
            assert [e["data"]["n"] for e in arrived] == [0, 1, 2, 3, 4]
            assert {e["fnc_id"] for e in arrived} == {state.fnc_id}
    finally:
        await masterd.stop()


@pytest.mark.slow
async def test_the_spool_survives_a_node_restart(tmp_path: Path) -> None:
    masterd = await start_masterd(HEARTBEAT, tmp_path / "m")
    try:
        async with node_with_master([masterd.address], tmp_path / "n") as node:
            await wait_state(masterd, "node-a", "alive")
            await masterd.kill()
            state = await run_call(node, "emit_events", {"count": 4, "kind": "spooled"})
        # the node stopped with its events undelivered; the master comes back first
        masterd = await start_masterd(HEARTBEAT, tmp_path / "m", port=masterd.port)
        async with node_with_master([masterd.address], tmp_path / "n"):
            arrived = await wait_events(masterd, 4, ["spooled"], timeout_s=30)
            assert [e["data"]["n"] for e in arrived] == [0, 1, 2, 3]
            assert {e["fnc_id"] for e in arrived} == {state.fnc_id}
            await wait_events(masterd, 2, ["node.start"])
            await wait_events(masterd, 1, ["node.stop"])  # the first run's, spooled
            seqs = [e["seq"] for e in await events_of(masterd) if e["seq"] is not None]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    finally:
        await masterd.stop()


@pytest.mark.slow
async def test_a_full_spool_drops_the_oldest_and_says_so(tmp_path: Path) -> None:
    masterd = await start_masterd(HEARTBEAT, tmp_path / "m")
    try:
        workdir = tmp_path / "n"
        async with node_with_master([masterd.address], workdir, "--spool-max-events", "20") as node:
            await wait_state(masterd, "node-a", "alive")
            await masterd.kill()
            await run_call(node, "emit_events", {"count": 50, "kind": "flood"})
            masterd = await start_masterd(HEARTBEAT, tmp_path / "m", port=masterd.port)
            dropped = await wait_events(masterd, 1, ["spool.dropped"], timeout_s=30)
            assert sum(e["data"]["count"] for e in dropped) >= 30
            await wait_events(masterd, 1, ["call.finish"], timeout_s=30)
            kept = [e["data"]["n"] for e in await events_of(masterd, ["flood"])]
            assert 49 in kept and 0 not in kept
            assert kept == sorted(kept) and len(kept) < 20
            _, page, _ = await get_text(node, "/metrics")
            assert metric(page, "noded_master_events_dropped_total") >= 30
    finally:
        await masterd.stop()


@pytest.mark.slow
async def test_spooled_events_survive_a_sigkill_of_the_node(tmp_path: Path) -> None:
    masterd = await start_masterd(HEARTBEAT, tmp_path / "m")
    try:
        node = await start_node([masterd.address], tmp_path / "n")
        try:
            await wait_state(masterd, "node-a", "alive")
            await masterd.kill()
            state = await run_call(node, "emit_events", {"count": 3, "kind": "before.kill"})
            spool = node.state_dir / "master-spool.sqlite3"
            await eventually(lambda: spooled(spool, "before.kill") == 3)
        finally:
            node.proc.kill()
            await node.wait_exit(10)
        masterd = await start_masterd(HEARTBEAT, tmp_path / "m", port=masterd.port)
        async with node_with_master([masterd.address], tmp_path / "n"):
            arrived = await wait_events(masterd, 3, ["before.kill"], timeout_s=30)
            assert [e["data"]["n"] for e in arrived] == [0, 1, 2]
            assert {e["fnc_id"] for e in arrived} == {state.fnc_id}
    finally:
        await masterd.stop()


def spooled(path: Path, kind: str) -> int:
    """Events of ``kind`` committed to the spool file (read beside the daemon)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM events WHERE type = ?", (kind,)).fetchone()[0])
