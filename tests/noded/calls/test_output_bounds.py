"""What keeping and serving output costs the daemon: a follower's read is bounded by the
answer, not by the size of the output kept, and the per-call limit has an upper bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from noded.config import MAX_OUTPUT_BYTES
from tests.helpers import run_node
from tests.noded.test_daemon import run_noded_cli

MiB = 1 << 20


def rss_kib(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak) of ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Make ``VmHWM`` the current RSS (Linux >= 4.0: writing 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        pytest.skip(f"cannot reset the daemon's peak RSS: {exc}")


async def test_a_read_near_the_end_of_a_large_output_costs_little(tmp_path: Path) -> None:
    limit = 64 * MiB  # segments of 32 MiB
    async with (
        run_node(["--max-output-bytes", str(limit)], workdir=tmp_path) as node,
        node.client() as client,
    ):
        state = await client.start_function("flood", {"megabytes": 60}, timeout=60)
        assert state.result == 60 * MiB and state.output_next > 55 * MiB
        near_end = state.output_next - 100  # no answer gave it: inside a record
        reset_peak(node.pid)
        before = rss_kib(node.pid, "VmRSS")
        began = time.monotonic()
        waited = await client.wait_for_function(state.fnc_id, timeout=0, output_from=near_end)
        took_s = time.monotonic() - began
        grew_kib = rss_kib(node.pid, "VmHWM") - before
        assert waited.output is not None and waited.output["next"] == state.output_next
        assert grew_kib < 8 * 1024, f"the daemon's peak RSS grew by {grew_kib} KiB"
        assert took_s < 1.0
        # a follower from the start gets about 1 MiB an answer, and reads it all
        answers, seen = 0, 0
        first = await client.wait_for_function(state.fnc_id, timeout=0, output_from=0)
        assert first.output is not None
        position = first.output["from"]
        while position < state.output_next:
            page = (
                await client.wait_for_function(state.fnc_id, timeout=0, output_from=position)
            ).output
            assert page is not None and page["from"] == position
            assert page["next"] - page["from"] <= MiB + 70 * 1024
            seen += sum(len(event["text"]) for event in page["events"])
            position, answers = page["next"], answers + 1
        assert seen <= 60 * MiB <= seen + first.output["skipped"]  # kept, or counted
        assert answers > 10


def test_max_output_bytes_has_an_upper_bound() -> None:
    over = run_noded_cli("--max-output-bytes", str(MAX_OUTPUT_BYTES + 1))
    assert over.returncode == 2 and "Traceback" not in over.stderr
    assert f"max_output_bytes must be at most {MAX_OUTPUT_BYTES}" in over.stderr


async def test_max_output_bytes_at_its_upper_bound_is_taken() -> None:
    async with run_node(["--max-output-bytes", str(MAX_OUTPUT_BYTES)]) as node:
        async with node.client() as client:
            assert (await client.identify())["pid"] == node.pid
