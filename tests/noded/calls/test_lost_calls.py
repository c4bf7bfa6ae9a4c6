"""A call lost in a restart is never run again by its request_id (issue 29, item 2)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from rpc_client.errors import RequestIdConflict, UnknownFunctionCall
from tests.helpers import eventually, run_node


def tally_args(tmp_path: Path, seconds: float = 60) -> dict[str, Any]:
    return {"path": str(tmp_path / "tally"), "seconds": seconds}


def runs(tmp_path: Path) -> int:
    tally = tmp_path / "tally"
    return tally.read_text().count("run") if tally.exists() else 0


async def start_and_crash(node: LocalNode, tmp_path: Path, request_id: str) -> str:
    """Start a long tally under ``request_id``, wait for its run, SIGKILL the daemon."""
    before = runs(tmp_path)
    async with node.client() as client:
        state = await client.start_function(
            "soak_tally", tally_args(tmp_path), timeout=0, request_id=request_id
        )
    await eventually(lambda: runs(tmp_path) == before + 1)
    node.signal(signal.SIGKILL)
    assert await node.wait_exit(10) is not None
    return state.fnc_id


async def refused_as_lost(client: NodeClient, args: dict[str, Any], request_id: str) -> str:
    with pytest.raises(UnknownFunctionCall) as lost:
        await client.start_function("soak_tally", args, timeout=1, request_id=request_id)
    return lost.value.message


async def test_a_call_lost_in_a_crash_is_not_run_again_by_its_request_id(
    tmp_path: Path,
) -> None:
    args = tally_args(tmp_path)
    async with run_node(workdir=tmp_path) as first:
        fnc_id = await start_and_crash(first, tmp_path, "once")
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        message = await refused_as_lost(client, args, "once")
        assert fnc_id in message and "earlier ganeti-noded" in message
        assert "lost" in message and f"pid {first.pid}" in message
        with pytest.raises(RequestIdConflict, match=fnc_id):  # other arguments: 409
            await client.start_function(
                "soak_tally", {**args, "seconds": 1}, timeout=0, request_id="once"
            )
        second.signal(signal.SIGKILL)  # the next daemon still knows it
        assert await second.wait_exit(10) is not None
    async with run_node(workdir=tmp_path) as third, third.client() as client:
        assert fnc_id in await refused_as_lost(client, args, "once")
        third.signal(signal.SIGTERM)  # and after a clean stop too
        assert await third.wait_exit(20) == 0
    async with run_node(workdir=tmp_path) as fourth, fourth.client() as client:
        assert fnc_id in await refused_as_lost(client, args, "once")
    assert runs(tmp_path) == 1


async def test_a_lost_request_id_is_kept_as_long_as_a_result_would_be(tmp_path: Path) -> None:
    limits = ["--result-ttl", "3", "--max-retained", "1"]
    async with run_node(limits, workdir=tmp_path) as first:
        older = await start_and_crash(first, tmp_path, "older")
    async with run_node(limits, workdir=tmp_path) as second:
        newer = await start_and_crash(second, tmp_path, "newer")
    journal = tmp_path / "state" / "calls.journal"
    async with run_node(limits, workdir=tmp_path) as third, third.client() as client:
        # --max-retained 1: the older lost call was dropped for the newer one
        assert older not in journal.read_text()
        assert newer in await refused_as_lost(client, tally_args(tmp_path), "newer")
        # --result-ttl 3: then it is forgotten, and the key is free again
        await eventually(lambda: f'"op":"forget","fnc_id":"{newer}"' in journal.read_text())
        again = await client.start_function(
            "soak_tally", tally_args(tmp_path, 0), timeout=10, request_id="newer"
        )
        assert again.finished and again.fnc_id != newer
    assert runs(tmp_path) == 3


async def test_a_call_running_at_a_clean_stop_answers_its_request_id(tmp_path: Path) -> None:
    args = tally_args(tmp_path)
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        state = await client.start_function("soak_tally", args, timeout=0, request_id="key")
        await eventually(lambda: runs(tmp_path) == 1)
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        again = await client.start_function("soak_tally", args, timeout=1, request_id="key")
        assert again.fnc_id == state.fnc_id and again.error is not None
        assert again.error["reason"] == "shutdown"
    assert runs(tmp_path) == 1
