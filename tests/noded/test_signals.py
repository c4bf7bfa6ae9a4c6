"""Signals and the loop: SIGHUP asks for a reload that the loop does, step by step; a
second SIGTERM or SIGINT while the daemon stops ends it at once, its calls killed."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from rpc_client.protocol import FncId
from tests.helpers import eventually, run_node, start_with_grandchildren, still_alive, zygotes

pytestmark = pytest.mark.both_spawners

FUNCTIONS = """
from noded import function


@function
def before() -> int:
    return 1
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_stop_signal_forces_the_exit_and_kills_the_calls(
    tmp_path: Path, sig: signal.Signals, spawn_method: str
) -> None:
    args = ["--shutdown-grace", "120", "--spawn", spawn_method]
    async with run_node(args) as node, node.client() as client:
        fnc_id, kids = await start_with_grandchildren(client, tmp_path, ignore_term=True)
        forks = [proc.pid for proc in zygotes(node.pid)]
        node.signal(signal.SIGTERM)  # held: the call ignores it, the grace is 120 s
        await eventually(lambda: "shutdown.terminate" in node.log_text(), timeout_s=20)
        began = time.monotonic()
        node.signal(sig)
        assert await node.wait_exit(20) == 128 + sig
        assert time.monotonic() - began < 15
        said = node.log_text()
        assert "daemon.forced_exit" in said and f"signal={sig.name}" in said, said
        assert "killed_groups=1" in said, said
        assert "Traceback" not in said
    assert await still_alive([FncId.parse(fnc_id).cpid, *kids]) == []
    assert await still_alive(forks) == []  # the fork server leaves on its socket's EOF


async def test_a_reload_step_that_fails_stops_none_of_the_others(tmp_path: Path) -> None:
    """The log file's path became a directory: SIGHUP cannot reopen it.  Done in the
    signal handler, that failure ended the reload there, and the functions were never
    imported again; the old log file says why."""
    site, logs = tmp_path / "site", tmp_path / "logs"
    site.mkdir()
    logs.mkdir()
    (site / "sitefns_signals.py").write_text(FUNCTIONS)
    log_file = logs / "noded.log"
    args = ["--functions", "sitefns_signals", "--functions-path", str(site),
            "--log-file", str(log_file)]  # fmt: skip
    async with run_node(args, workdir=tmp_path / "node") as node, node.client() as client:
        await eventually(lambda: "daemon.ready" in log_file.read_text(), timeout_s=20)
        moved = logs / "noded.log.1"
        log_file.rename(moved)
        log_file.mkdir()  # where the log was: a directory, which cannot be opened
        (site / "sitefns_signals.py").write_text(
            FUNCTIONS + "\n\n@function\ndef after() -> int:\n    return 2\n"
        )
        node.signal(signal.SIGHUP)
        await eventually(lambda: "functions.reloaded" in moved.read_text(), timeout_s=30)
        assert (await client.start_function("after", {}, timeout=20)).result == 2
        said = moved.read_text()
        assert "daemon.reload_failed" in said and "step=log_files" in said, said
        log_file.rmdir()
        node.signal(signal.SIGHUP)  # the next reload reopens it
        await eventually(lambda: log_file.is_file() and "functions.reload" in log_file.read_text())


async def test_sighups_that_come_together_ask_for_reloads_the_loop_does(
    tmp_path: Path,
) -> None:
    async with run_node(workdir=tmp_path / "node") as node, node.client() as client:
        for _ in range(20):
            node.signal(signal.SIGHUP)
            await asyncio.sleep(0.001)
        await eventually(lambda: "functions.reloaded" in node.log_text(), timeout_s=30)
        assert (await client.start_function("echo", {"value": 1}, timeout=20)).result == 1
        assert "Traceback" not in node.log_text()
