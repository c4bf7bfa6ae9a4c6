"""``--max-retained-output-bytes`` counts what the output files take on disk, in whole
blocks of the file system: many calls that each print a line do not fill a small state
directory (attack 29, defect 5)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from tests.disks import small_disk
from tests.helpers import get_text, metric, run_node

MIN_OUTPUT_BYTES = 8192
MiB = 1 << 20


async def on_disk(node: LocalNode) -> float:
    return metric((await get_text(node, "/metrics"))[1], "noded_output_bytes_on_disk")


def blocks_taken(node: LocalNode) -> int:
    """What ``<state-dir>/output`` really takes, by the file system's count."""
    return sum(path.stat().st_blocks * 512 for path in (node.state_dir / "output").iterdir())


async def one_line(client: NodeClient) -> None:
    state = await client.start_function("print_lines", {"count": 1}, timeout=30)
    assert state.error is None and state.output_next > 0


async def test_a_line_of_output_counts_a_whole_block_at_the_bounds_edge(tmp_path: Path) -> None:
    block = os.statvfs(tmp_path).f_frsize
    if 3 * block < MIN_OUTPUT_BYTES:
        pytest.skip(f"blocks of {block} bytes: three are less than --max-output-bytes' minimum")
    args = ["--max-output-bytes", str(MIN_OUTPUT_BYTES),
            "--max-retained-output-bytes", str(3 * block)]  # fmt: skip
    async with run_node(args, workdir=tmp_path) as node, node.client() as client:
        for _ in range(3):  # exactly at the bound: three one-line outputs, a block each
            await one_line(client)
        assert await on_disk(node) == 3 * block
        assert blocks_taken(node) <= 3 * block
        _, text, _ = await get_text(node, "/metrics")
        assert metric(text, "noded_output_calls_evicted_total") == 0
        await one_line(client)  # a block past it: the first call's output goes
        assert await on_disk(node) == 3 * block
        assert blocks_taken(node) <= 3 * block
        _, text, _ = await get_text(node, "/metrics")
        assert metric(text, "noded_output_calls_evicted_total") == 1
        assert metric(text, "noded_output_bytes_kept_total") < block  # bytes, as before


async def test_many_calls_printing_a_line_never_fill_a_small_state_directory(
    tmp_path: Path,
) -> None:
    # before: 450 one-line outputs (a page each) filled this 2 MiB tmpfs while the bound,
    # a quarter of it, counted 5 KB; output could not be written any more, and every
    # start after that was 507 InsufficientStorage (the journal had no room)
    with small_disk(tmp_path / "state", "2m"):
        args = ["--max-output-bytes", "65536"]  # the default bound: 512 KiB here
        async with run_node(args, workdir=tmp_path) as node, node.client() as client:
            for _ in range(75):
                await asyncio.gather(*(one_line(client) for _ in range(8)))
            assert await on_disk(node) <= 512 * 1024
            assert blocks_taken(node) <= 512 * 1024
            _, text, _ = await get_text(node, "/metrics")
            assert metric(text, "noded_output_calls_evicted_total") >= 400
            assert (await client.start_function("echo", {"value": 1}, timeout=10)).result == 1


async def test_retained_results_by_default_leave_a_small_state_directory_room(
    tmp_path: Path,
) -> None:
    # before: results were kept up to 256 MiB whatever the disk, and the journal (twice
    # its live records and 16 MiB before a rewrite) filled this 64 MiB tmpfs: records
    # waited in memory, new starts were refused with 507
    with small_disk(tmp_path / "state", "64m"):
        async with run_node(workdir=tmp_path) as node, node.client() as client:
            for _ in range(35):  # 70 MiB of results
                states = await asyncio.gather(
                    *(client.start_function("big", {"size": MiB}, timeout=30) for _ in range(2))
                )
                assert all(state.error is None for state in states)
            disk = os.statvfs(node.state_dir)
            assert disk.f_bavail * disk.f_frsize > 8 * MiB  # the journal left room
            _, text, _ = await get_text(node, "/metrics")
            assert metric(text, "noded_results_retained_bytes") <= 9 * MiB  # an eighth, +1
            assert metric(text, 'noded_results_dropped_total{limit="max_retained_bytes"}') > 20
            assert (await client.start_function("echo", {"value": 1}, timeout=10)).result == 1
