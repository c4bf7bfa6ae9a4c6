"""SIGTERM/SIGINT: refuse new calls, TERM every group, wait the grace, KILL, reap, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from rpc_client.protocol import FncId
from tests.helpers import (
    alive,
    eventually,
    lasting_zombies,
    put,
    run_node,
    start_ignoring_sigterm,
    start_with_grandchildren,
    still_alive,
)

pytestmark = pytest.mark.both_spawners


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_kills_function_processes_and_their_children(
    tmp_path: Path, sig: signal.Signals
) -> None:
    async with run_node() as node, node.client() as client:
        fnc_id, kids = await start_with_grandchildren(client, tmp_path)
        leader = FncId.parse(fnc_id).cpid
        assert all(alive(pid) for pid in [leader, *kids])
        began = time.monotonic()
        node.signal(sig)
        assert await node.wait_exit(20) == 0
        assert time.monotonic() - began < 8  # they took SIGTERM: no grace period needed
        assert "shutdown.terminate calls=1 processes=1 " in node.log_text()
        assert "Traceback" not in node.log_text()  # the fork server leaves without one
    assert await still_alive([leader, *kids]) == []


async def test_what_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    async with run_node(["--shutdown-grace", "1"]) as node, node.client() as client:
        fnc_id, kids = await start_with_grandchildren(client, tmp_path, ignore_term=True)
        began = time.monotonic()
        node.signal(signal.SIGTERM)
        assert await node.wait_exit(20) == 0
        assert 0.9 <= time.monotonic() - began < 10
    assert await still_alive([FncId.parse(fnc_id).cpid, *kids]) == []


async def test_during_the_drain_new_calls_get_shutting_down_and_waits_get_the_abort(
    tmp_path: Path,
) -> None:
    async with run_node(["--shutdown-grace", "2"]) as node, node.client() as client:
        running = await start_ignoring_sigterm(client, tmp_path / "ready")
        waiter = asyncio.create_task(client.wait_for_function(running.fnc_id, timeout=30))
        node.signal(signal.SIGTERM)
        await eventually(lambda: "shutdown.terminate" in node.log_text())
        status, body, _ = await put(
            node, "/StartFunction", {"fn_name": "echo", "fn_args": {"value": 1}, "timeout": 1}
        )
        assert (status, body["error"]["type"]) == (503, "ShuttingDown")
        state = await asyncio.wait_for(waiter, 15)
        assert state.finished
        assert state.error["type"] == "FunctionAborted"
        assert state.error["reason"] == "shutdown"
        assert await node.wait_exit(20) == 0


async def test_no_zombie_is_left_while_running(node: LocalNode, client: NodeClient) -> None:
    for _ in range(5):
        await client.start_function("exit_now", {"code": 0}, timeout=10)
        await client.start_function("echo", {"value": 0}, timeout=10)
    assert await lasting_zombies(node.pid) == []
