"""A reload imports the function modules in child processes, never in the daemon's event
loop, and within --import-timeout: a slow import stalls no request, one that takes too
long is refused and the functions loaded before keep serving."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import eventually, marked_processes, put, run_node

SLOW_MODULE = """
import os
import time

from noded import function

_flag = os.environ.get("SLOW_IMPORT_FLAG", "")
if os.path.exists(_flag):
    seconds = float(open(_flag).read())
    if seconds < 60:  # the first import that sees it sleeps; the next ones do not
        os.unlink(_flag)
    time.sleep(seconds)


@function
def version() -> int:
    return VERSION
"""


def write_site(root: Path, version: int) -> None:
    package = root / "slowfns"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    # a different size each version: Python never takes a stale .pyc for it
    (package / "functions.py").write_text(SLOW_MODULE + f"\nVERSION = {version}\n" + "#" * version)


def node_args(site: Path, *extra: str) -> list[str]:
    return ["--functions", "slowfns.functions", "--functions-path", str(site), *extra]


@pytest.mark.slow
async def test_a_slow_import_in_a_reload_stalls_no_request(tmp_path: Path) -> None:
    site, flag = tmp_path / "site", tmp_path / "slow"
    write_site(site, 1)
    env = {"SLOW_IMPORT_FLAG": str(flag)}
    async with run_node(node_args(site), env=env, workdir=tmp_path / "node") as node:
        write_site(site, 2)
        flag.write_text("2.5")  # the next import takes 2.5 s
        reload = asyncio.create_task(put(node, "/ReloadFunctions", {}, timeout_s=60))
        slowest, began = 0.0, time.monotonic()
        while time.monotonic() - began < 2.5 and not reload.done():
            asked = time.monotonic()
            status, _, _ = await put(node, "/Identify", {})
            assert status == 200
            slowest = max(slowest, time.monotonic() - asked)
            await asyncio.sleep(0.05)
        assert slowest < 0.5, f"Identify took {slowest:.3f} s during the reload's import"
        status, answer, _ = await reload
        assert status == 200 and answer["reloaded"], answer
        body = {"fn_name": "version", "fn_args": {}, "timeout": 10}
        assert (await put(node, "/StartFunction", body))[1]["result"] == 2


@pytest.mark.slow
async def test_an_import_over_the_bound_is_refused_and_the_old_functions_serve(
    tmp_path: Path,
) -> None:
    site, flag = tmp_path / "site", tmp_path / "slow"
    write_site(site, 1)
    env = {"SLOW_IMPORT_FLAG": str(flag)}
    args = node_args(site, "--import-timeout", "2")
    async with run_node(args, env=env, workdir=tmp_path / "node") as node:
        write_site(site, 2)
        flag.write_text("600")  # every import from now on hangs
        began = time.monotonic()
        status, answer, _ = await put(node, "/ReloadFunctions", {}, timeout_s=60)
        took_s = time.monotonic() - began
        assert status == 200 and answer["reloaded"] is False, answer
        assert "took longer than 2 s" in answer["error"], answer
        assert "keep serving" in answer["error"], answer
        assert 2 <= took_s < 10, took_s
        body = {"fn_name": "version", "fn_args": {}, "timeout": 10}
        assert (await put(node, "/StartFunction", body))[1]["result"] == 1
        assert "functions.reload_failed" in node.log_text()
        await eventually(lambda: not importers())  # the hanging import was killed
        # within the bound, the same reload succeeds
        flag.unlink()
        status, answer, _ = await put(node, "/ReloadFunctions", {}, timeout_s=60)
        assert status == 200 and answer["reloaded"], answer
        assert (await put(node, "/StartFunction", body))[1]["result"] == 2


def importers() -> list[int]:
    found = []
    for proc in marked_processes():
        try:
            if "noded.process.child.describe" in " ".join(proc.cmdline()):
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


async def test_sighups_during_a_reload_ask_for_one_more_not_one_each(tmp_path: Path) -> None:
    """30 SIGHUPs 20 ms apart while a reload's import takes 1.5 s: at most two reloads
    (the one running and one more after it), and a ReloadFunctions asked after them is
    answered promptly, not behind a queue of 30 imports and fork servers."""
    site, flag = tmp_path / "site", tmp_path / "slow"
    write_site(site, 1)
    env = {"SLOW_IMPORT_FLAG": str(flag)}
    async with run_node(node_args(site), env=env, workdir=tmp_path / "node") as node:
        write_site(site, 2)
        flag.write_text("1.5")  # the next import (the first reload's) takes 1.5 s
        for _ in range(30):
            node.signal(signal.SIGHUP)
            await asyncio.sleep(0.02)
        began = time.monotonic()
        status, answer, _ = await put(node, "/ReloadFunctions", {}, timeout_s=60)
        took_s = time.monotonic() - began
        assert status == 200 and answer["reloaded"], answer
        said = node.log_text()
        assert said.count("daemon.reload ") <= 2, said
        assert said.count("functions.reloaded") <= 3, said  # two SIGHUP reloads and ours
        assert took_s < 8, took_s
