"""What keeping and serving output costs the daemon: a follower's read is bounded by the
answer, not by the size of the output kept, and the per-call limit has an upper bound."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from masterd.local import LocalNode
from noded.config import MAX_OUTPUT_BYTES
from rpc_client.client import NodeClient
from tests.disks import small_disk
from tests.helpers import get_text, metric, run_node, run_noded

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
    over = run_noded("--max-output-bytes", str(MAX_OUTPUT_BYTES + 1))
    assert over.returncode == 2 and "Traceback" not in over.stderr
    assert f"max_output_bytes must be at most {MAX_OUTPUT_BYTES}" in over.stderr


async def test_max_output_bytes_at_its_upper_bound_is_taken() -> None:
    async with run_node(["--max-output-bytes", str(MAX_OUTPUT_BYTES)]) as node:
        async with node.client() as client:
            assert (await client.identify())["pid"] == node.pid


def output_on_disk(node: LocalNode) -> int:
    return sum(path.stat().st_size for path in (node.state_dir / "output").iterdir())


async def read_text(client: NodeClient, fnc_id: str) -> tuple[int, str]:
    """``(skipped, stdout)`` of a finished call's whole output."""
    page = (await client.wait_for_function(fnc_id, timeout=0, output_from=0)).output
    assert page is not None
    skipped, text = page["skipped"], ""
    while True:
        text += "".join(e["text"] for e in page["events"] if e["stream"] == "stdout")
        state = await client.wait_for_function(fnc_id, timeout=0, output_from=page["next"])
        if not state.output or not state.output["events"]:
            return skipped, text
        page = state.output


async def test_all_calls_output_stays_under_its_bound_the_oldest_dropped_first(
    tmp_path: Path,
) -> None:
    bound = 256 * 1024
    args = ["--max-output-bytes", "65536", "--max-retained-output-bytes", str(bound)]
    size = 50_000
    async with run_node(args, workdir=tmp_path) as node, node.client() as client:
        states = []
        for _ in range(12):
            states.append(await client.start_function("flood", {"megabytes": size / MiB},
                                                      timeout=30))  # fmt: skip
            assert output_on_disk(node) <= bound
        oldest, newest = states[0], states[-1]
        assert await read_text(client, newest.fnc_id) == (0, "0123456789abcdef" * 3125)
        assert await read_text(client, oldest.fnc_id) == (oldest.output_next, "")
        again = await client.wait_for_function(oldest.fnc_id, timeout=0, output_from=100)
        assert again.output_next == oldest.output_next
        assert again.output == {"from": oldest.output_next, "next": oldest.output_next,
                                "skipped": oldest.output_next - 100, "events": []}  # fmt: skip
        metrics = (await get_text(node, "/metrics"))[1]
        assert metric(metrics, "noded_output_calls_evicted_total") >= 6
        assert 0 < metric(metrics, "noded_output_bytes_on_disk") <= bound
        assert "output.dropped" in node.log_text()
    async with run_node(args, workdir=tmp_path) as node, node.client() as client:
        assert await read_text(client, oldest.fnc_id) == (oldest.output_next, "")
        state = await client.wait_for_function(oldest.fnc_id, timeout=0)
        assert state.output_next == oldest.output_next  # positions never go back
        assert await read_text(client, newest.fnc_id) == (0, "0123456789abcdef" * 3125)


async def test_the_default_bound_leaves_a_small_state_directory_room(tmp_path: Path) -> None:
    # 16 calls keeping 1 MiB each would fill 12 MiB: then every start is 507
    with small_disk(tmp_path / "state", "12m"):
        async with run_node(workdir=tmp_path) as node, node.client() as client:
            for _ in range(4):
                batch = [client.start_function("flood", {"megabytes": 1.2}, timeout=60)
                         for _ in range(4)]  # fmt: skip
                for state in await asyncio.gather(*batch):
                    assert state.error is None, state.error
            assert output_on_disk(node) <= 3 * MiB  # a quarter of the file system
            assert (await client.start_function("echo", {"value": 1}, timeout=10)).result == 1


async def test_output_that_cannot_be_written_is_logged_once_per_interval(tmp_path: Path) -> None:
    with small_disk(tmp_path / "state", "4m") as disk:
        async with run_node(workdir=tmp_path) as node, node.client() as client:
            state = await client.start_function(
                "print_lines", {"count": 1500, "delay_s": 0.001}, timeout=0
            )
            disk.fill()  # each line a write that fails, from a page on at the latest
            done = await client.wait_for_function(state.fnc_id, timeout=30)
            assert done.finished and done.result == 1500
            lines = [line for line in node.log_text().splitlines() if "output.write_failed" in line]
            failed = metric(
                (await get_text(node, "/metrics"))[1], "noded_output_bytes_dropped_total"
            )
            disk.free()
        assert failed > 5000  # hundreds of writes failed
        assert 1 <= len(lines) <= 2, lines  # one line each 10 s
        assert f"fnc_id={state.fnc_id}" in lines[0] and "suppressed=" in lines[0]


def test_the_bound_on_all_output_is_at_least_one_calls() -> None:
    done = run_noded("--max-output-bytes", "65536", "--max-retained-output-bytes", "65535")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "max_retained_output_bytes must be at least max_output_bytes" in done.stderr
