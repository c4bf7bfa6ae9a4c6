"""Daemon manners: systemd notify and watchdog, the unit file, config file, log files."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpc_client.errors import NodeBusy
from tests.helpers import (
    ROOT,
    eventually,
    get_text,
    metric,
    put,
    run_node,
    run_noded,
    start_ignoring_sigterm,
)

UNIT = ROOT / "doc" / "examples" / "systemd" / "ganeti-noded.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        yield sock


async def messages(sock: socket.socket, until: str, timeout_s: float = 15) -> list[str]:
    """Datagrams received until one contains ``until``."""
    got: list[str] = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            got.append(sock.recv(4096).decode())
            if until in got[-1]:
                return got
        except BlockingIOError:
            await asyncio.sleep(0.02)
    raise AssertionError(f"no {until!r} in {got}")


async def test_ready_once_the_port_is_open_and_stopping_on_sigterm(
    notify_socket: socket.socket,
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname()}
    async with run_node(env=env) as node:
        ready = await messages(notify_socket, "READY=1")
        assert f"MAINPID={node.pid}" in ready[-1]
        with socket.create_connection(("127.0.0.1", node.port), timeout=5):
            pass  # the port is open, as READY promised
        async with node.client() as client:  # functions never see systemd's socket
            env_seen = await client.start_function("whoami", timeout=10)
            assert env_seen.finished
        node.signal(signal.SIGTERM)
        await messages(notify_socket, "STOPPING=1")
        assert await node.wait_exit(20) == 0


async def test_abstract_notify_socket_names_work(tmp_path: Path) -> None:
    name = f"noded-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        async with run_node(env={"NOTIFY_SOCKET": "@" + name}):
            await messages(sock, "READY=1")


async def test_watchdog_pings_from_the_event_loop(notify_socket: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "200000"}
    async with run_node(env=env):
        got = await messages(notify_socket, "READY=1")
        got += await messages(notify_socket, "WATCHDOG=1")
        got += await messages(notify_socket, "WATCHDOG=1")
    assert sum("WATCHDOG=1" in m for m in got) >= 2


async def test_the_unit_file_verifies() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = Path(os.environ.get("TMPDIR", "/tmp")) / f"ganeti-noded-{os.getpid()}.service"
    daemon = Path(sys.executable).with_name("ganeti-noded")
    unit.write_text(UNIT.read_text().replace("/opt/noded/bin/ganeti-noded", str(daemon)))
    try:
        done = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
    finally:
        unit.unlink()
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "" and done.stdout.strip() == ""  # not even a warning
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "KillMode=mixed",
        "Restart=on-failure",
        "WatchdogSec=",
        "StateDirectory=ganeti-noded",
        "TimeoutStopSec=30",
    ):
        assert line in text


async def test_a_config_file_sets_flags_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "noded.toml"
    config.write_text('max-functions = 1\nfunctions = ["tests.functions"]\nname = "from-file"\n')
    async with run_node(["--config", str(config), "--name", "from-flag"]) as node:
        async with node.client() as client:
            assert (await client.identify())["name"] == "from-flag"
            await client.start_function("sleep", {"seconds": 2}, timeout=0)
            with pytest.raises(NodeBusy, match="is 1"):  # max-functions from the file
                await client.start_function("add", {"a": 1, "b": 1}, timeout=0)
    async with run_node(["--config", str(config), "--max-functions", "2"]) as node:
        async with node.client() as client:
            assert (await client.identify())["name"] == "from-file"
            await client.start_function("sleep", {"seconds": 2}, timeout=0)
            assert (await client.start_function("add", {"a": 1, "b": 1}, timeout=10)).result == 2


def test_a_config_file_with_an_unknown_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "noded.toml"
    config.write_text("max-funtions = 1\n")
    done = run_noded("--config", str(config))
    assert done.returncode == 2 and "unknown setting 'max-funtions'" in done.stderr


async def test_sighup_reopens_the_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "noded.log"
    async with run_node(["--log-file", str(log_file)]) as node, node.client() as client:
        await client.start_function("echo", {"value": 1}, timeout=10)
        await eventually(lambda: "call.finish" in log_file.read_text())  # logged after the answer
        log_file.rename(tmp_path / "noded.log.1")  # what logrotate does
        node.signal(signal.SIGHUP)
        await eventually(log_file.exists)
        state = await client.start_function("echo", {"value": 2}, timeout=10)
        await eventually(lambda: "call.finish" in log_file.read_text())
        assert state.fnc_id in log_file.read_text()
        assert state.fnc_id not in (tmp_path / "noded.log.1").read_text()


async def test_metrics_count_calls_outcomes_aborts_kills_and_rejections(tmp_path: Path) -> None:
    args = ["--max-functions", "2", "--kill-grace", "0.3", "--max-request-bytes", "1000"]
    async with run_node(args) as node, node.client() as client:
        await client.start_function("echo", {"value": 1}, timeout=10)
        await client.start_function("fail", {"message": "x"}, timeout=10)
        stubborn = await start_ignoring_sigterm(client, tmp_path / "ready", seconds=30)
        await client.start_function("sleep", {"seconds": 30}, timeout=0)
        with pytest.raises(NodeBusy):
            await client.start_function("echo", {"value": 2}, timeout=0)
        await client.abort_function(stubborn.fnc_id)
        status, _, _ = await put(node, "/Identify", raw=b"{" + b" " * 2000 + b"}")
        assert status == 413
        status, text, headers = await get_text(node, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert metric(text, 'noded_calls_started_total{fn_name="echo"}') == 1
    assert metric(text, 'noded_calls_finished_total{fn_name="echo",outcome="ok"}') == 1
    assert metric(text, 'noded_calls_finished_total{fn_name="fail",outcome="RuntimeError"}') == 1
    assert metric(text, 'noded_aborts_total{reason="aborted"}') == 1
    assert metric(text, "noded_kills_total") == 1
    assert metric(text, 'noded_limit_rejections_total{limit="max_functions"}') == 1
    assert metric(text, 'noded_limit_rejections_total{limit="max_request_bytes"}') == 1
    assert metric(text, "noded_functions_running") == 1
    assert metric(text, 'noded_call_duration_seconds_count{fn_name="echo"}') == 1
