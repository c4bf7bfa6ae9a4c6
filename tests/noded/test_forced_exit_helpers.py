"""A forced exit (a second SIGTERM) kills the daemon's helper processes too: a reload's
importer or new fork server hanging in a module's import, and the fork server start-up
waits for.  Each reads no socket or pipe until its import ends, so none would leave as
the daemon's end closes them (attack33, defect 3)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from masterd.local import free_port
from tests.helpers import (
    eventually,
    marked_processes,
    node_env,
    noded_argv,
    put,
    run_node,
    start_ignoring_sigterm,
)

#: the import hangs in the process whose command line holds the flag file's word
#: ("describe": a reload's importer; "fork_server": a fork server), never in the daemon
HANGING_MODULE = """
import os
import sys
import time

from noded import function

_flag = os.environ.get("HANG_IMPORT_FLAG", "")
if os.path.exists(_flag) and open(_flag).read().strip() in " ".join(sys.argv):
    time.sleep(600)


@function
def hang_ok() -> int:
    return 1
"""


KINDS = ("describe", "fork_server")


def write_site(tmp_path: Path) -> tuple[Path, Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "hangfns.py").write_text(HANGING_MODULE)
    return site, tmp_path / "hang"


def helpers_of(flag: Path, *kinds: str) -> list[int]:
    """This test's daemon's importers and fork servers (or those of ``kinds``)."""
    found = []
    for proc in marked_processes():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("HANG_IMPORT_FLAG") == str(flag):
                command = " ".join(proc.cmdline())
                if any(f"child.{kind}" in command for kind in kinds or KINDS):
                    found.append(proc.pid)
    return found


def children(pid: int, kind: str) -> list[int]:
    """The daemon's own children of ``kind`` (not the fork server's spares)."""
    found = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):
            if f"child.{kind}" in " ".join(child.cmdline()):
                found.append(child.pid)
    return found


@pytest.mark.parametrize("where", ["describe", "fork_server"])
async def test_a_forced_exit_kills_a_reloads_hanging_importer_or_fork_server(
    tmp_path: Path, where: str
) -> None:
    site, flag = write_site(tmp_path)
    args = ["--functions", "tests.functions,hangfns", "--functions-path",
            str(site), "--shutdown-grace", "120", "--import-timeout", "600"]  # fmt: skip
    env = {"HANG_IMPORT_FLAG": str(flag)}
    async with run_node(args, env=env, workdir=tmp_path / "node") as node:
        async with node.client() as client:
            await start_ignoring_sigterm(client, tmp_path / "ready")  # holds the drain
        flag.write_text(where)
        hanging = 1 if where == "describe" else 2
        reload = asyncio.create_task(put(node, "/ReloadFunctions", {}, timeout_s=60))
        # the reload's importer, or its new fork server beside the one serving
        await eventually(lambda: len(children(node.pid, where)) >= hanging, timeout_s=30)
        node.signal(signal.SIGTERM)
        await eventually(lambda: "shutdown.terminate" in node.log_text(), timeout_s=20)
        node.signal(signal.SIGTERM)
        assert await node.wait_exit(20) == 128 + signal.SIGTERM
        assert "daemon.forced_exit" in node.log_text()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reload, 10)
    await eventually(lambda: helpers_of(flag) == [], timeout_s=10)


async def test_a_forced_exit_during_start_up_kills_the_fork_server_it_waits_for(
    tmp_path: Path,
) -> None:
    site, flag = write_site(tmp_path)
    flag.write_text("fork_server")
    env = {**os.environ, **node_env({"HANG_IMPORT_FLAG": str(flag)})}
    argv = noded_argv("--bind", "127.0.0.1", "--port", str(free_port()), "--state-dir",
                      str(tmp_path / "state"), "--functions", "hangfns", "--functions-path",
                      str(site), "--import-timeout", "600")  # fmt: skip
    with open(tmp_path / "noded.log", "wb") as log:
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        await eventually(lambda: helpers_of(flag) != [], timeout_s=30)
        daemon.send_signal(signal.SIGTERM)
        await eventually(lambda: "daemon.signal" in (tmp_path / "noded.log").read_text())
        daemon.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(daemon.wait, 30)
    finally:
        daemon.kill()
        daemon.wait(10)
    said = (tmp_path / "noded.log").read_text()
    assert status == 128 + signal.SIGTERM, said
    assert "daemon.forced_exit" in said and "killed_helpers=1" in said, said
    await eventually(lambda: helpers_of(flag) == [], timeout_s=10)


async def test_two_stop_signals_during_a_sighup_reload_end_in_0_or_143(tmp_path: Path) -> None:
    """A SIGHUP reload hangs in its import; two SIGTERMs 50 ms apart.  The second came
    when the stop had ended and the loop's handlers were gone: the daemon died of it
    (exit -15).  A stop signal goes through the forced exit whatever the phase."""
    site, flag = write_site(tmp_path)
    args = ["--functions", "hangfns", "--functions-path", str(site), "--import-timeout", "600"]
    async with run_node(args, env={"HANG_IMPORT_FLAG": str(flag)}, workdir=tmp_path) as node:
        flag.write_text("describe")
        node.signal(signal.SIGHUP)
        await eventually(lambda: children(node.pid, "describe") != [], timeout_s=30)
        node.signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        node.signal(signal.SIGTERM)
        status = await node.wait_exit(20)
        assert status in (0, 128 + signal.SIGTERM), node.log_text()
    await eventually(lambda: helpers_of(flag) == [], timeout_s=10)


async def test_a_reload_functions_in_flight_at_sigterm_is_answered(tmp_path: Path) -> None:
    """Its import hangs; SIGTERM: the call is answered (not reloaded: shutting down)
    before the connection closes, and the importer is killed."""
    site, flag = write_site(tmp_path)
    args = ["--functions", "hangfns", "--functions-path", str(site), "--import-timeout", "600"]
    async with run_node(args, env={"HANG_IMPORT_FLAG": str(flag)}, workdir=tmp_path) as node:
        flag.write_text("describe")
        reload = asyncio.create_task(put(node, "/ReloadFunctions", {}, timeout_s=30))
        await eventually(lambda: children(node.pid, "describe") != [], timeout_s=30)
        node.signal(signal.SIGTERM)
        status, answer, _ = await asyncio.wait_for(reload, 30)
        assert status == 200 and answer["reloaded"] is False, answer
        assert "shutting down" in answer["error"], answer
        assert await node.wait_exit(20) == 0
    await eventually(lambda: helpers_of(flag) == [], timeout_s=10)
