"""SIGTERM/SIGINT: refuse new calls, TERM every group, wait the grace, KILL, reap, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from masterd.local import LocalNode, free_port
from rpc_client.client import NodeClient
from rpc_client.protocol import FncId
from tests.helpers import (
    alive,
    error_of,
    eventually,
    lasting_zombies,
    marked_processes,
    node_env,
    noded_argv,
    put,
    run_node,
    start_ignoring_sigterm,
    start_with_grandchildren,
    still_alive,
)
from tests.slow_start import STARTING_MARK

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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_during_start_up_stops_the_daemon_once_started(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Before, SIGTERM killed the daemon outright there, and SIGINT cancelled start-up
    half-way: a traceback, or a signal lost and a daemon that ran on."""
    mark = tmp_path / "starting"
    env = {**os.environ, **node_env({STARTING_MARK: str(mark)})}
    argv = noded_argv("--bind", "127.0.0.1", "--port", str(free_port()), "--state-dir",
                      str(tmp_path / "state"), "--functions", "tests.slow_start")  # fmt: skip
    with open(tmp_path / "noded.log", "wb") as log:
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        await eventually(mark.exists, timeout_s=30)  # it imports its functions: a second
        daemon.send_signal(sig)
        status = await asyncio.to_thread(daemon.wait, 30)
    finally:
        daemon.kill()
        daemon.wait(10)
    said = (tmp_path / "noded.log").read_text()
    assert status == 0, said
    assert f"daemon.signal signal={sig.name}" in said and "daemon.stopped" in said, said
    assert "Traceback" not in said
    await eventually(lambda: _started_with(mark) == [])  # the fork server and its spares


def _started_with(mark: Path) -> list[int]:
    found = []
    for proc in marked_processes():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(STARTING_MARK) == str(mark):
                found.append(proc.pid)
    return found


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
        assert error_of(state)["type"] == "FunctionAborted"
        assert error_of(state)["reason"] == "shutdown"
        assert await node.wait_exit(20) == 0


async def test_no_zombie_is_left_while_running(node: LocalNode, client: NodeClient) -> None:
    for _ in range(5):
        await client.start_function("exit_now", {"code": 0}, timeout=10)
        await client.start_function("echo", {"value": 0}, timeout=10)
    assert await lasting_zombies(node.pid) == []
