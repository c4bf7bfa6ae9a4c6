"""A function that abuses its frame channel (fd 3): a flood of progress lines, reports from
another thread while the result is written.  The daemon stays responsive and the result
stays whole.  And a shortage that fails every start does not flood the log."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest

from rpc_client.errors import NodeBusy
from tests.helpers import run_node, zygote_of

MiB = 1 << 20


async def test_a_progress_flood_on_fd3_does_not_freeze_the_daemon() -> None:
    async with run_node() as node, node.client() as client:
        flooding = asyncio.create_task(
            client.start_function("flood_progress", {"seconds": 3}, timeout=30)
        )
        began = time.monotonic()
        slowest = 0.0
        while not flooding.done():
            asked = time.monotonic()
            await client.identify()
            slowest = max(slowest, time.monotonic() - asked)
            await asyncio.sleep(0.05)
        state = await flooding
        assert state.error is None and state.result > 0, state.error
        assert time.monotonic() - began > 2.5  # Identify was asked while it flooded
        assert slowest < 0.5, f"Identify took {slowest:.2f} s during the flood"
        assert state.progress is not None and state.progress["message"] == "flooding"
        # the reports kept as output events are bounded, not one per line written
        page = (await client.wait_for_function(state.fnc_id, timeout=0, output_from=0)).output
        assert page is not None
        kept = page["skipped"] + page["next"] - page["from"]
        assert kept < 200_000, f"{state.result} reports written, {kept} bytes kept"


@pytest.mark.slow
async def test_progress_from_another_thread_never_cuts_into_a_large_result() -> None:
    async with run_node() as node, node.client() as client:
        size_mib = 24
        states = await asyncio.gather(
            *(
                client.start_function(
                    "progress_while_returning", {"megabytes": size_mib}, timeout=120
                )
                for _ in range(3)
            )
        )
        for state in states:
            assert state.error is None, state.error
            assert state.result == "x" * (size_mib * MiB)


async def test_starts_failing_for_want_of_descriptors_are_logged_once_per_interval() -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    async with run_node(["--spare-processes", "0"]) as node, node.client() as client:
        limit = ["prlimit", f"--pid={zygote_of(node.pid).pid}"]
        subprocess.run([*limit, "--nofile=6:"], check=True, timeout=10)  # no room for pipes
        try:
            for _ in range(20):
                with pytest.raises(NodeBusy):
                    await client.start_function("echo", {"value": 1}, timeout=5)
        finally:
            subprocess.run([*limit, "--nofile=1024:"], check=True, timeout=10)
        lines = [line for line in node.log_text().splitlines() if " spawn.failed " in line]
        assert 1 <= len(lines) <= 4, lines  # one a source (fork server, starts) in 10 s
        assert (await client.start_function("echo", {"value": 2}, timeout=10)).result == 2
