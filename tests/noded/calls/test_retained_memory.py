"""A dropped or forgotten call frees its result at once: the daemon's memory is bounded by
what it keeps (``--max-retained``, ``--max-retained-bytes``), not by the calls it ran
since the cyclic collector last ran (which the daemon makes rare: noded.server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import get_text, metric, run_node
from tests.noded.calls.test_output_bounds import rss_kib

MiB = 1 << 20
SIZE = 4 * MiB
CALLS = 20
#: what the daemon may grow by over its RSS after the first calls: a few results kept
#: (decoded, and their journal records being written), with room for the allocator
#: (about 15 MiB is seen); without the fix it grew by about 160 MiB
ALLOWED_GROWTH_MIB = 64


@pytest.mark.parametrize(
    "bound", [["--max-retained-bytes", "20000000"], ["--max-retained", "2"]], ids=str
)
async def test_results_dropped_at_a_bound_free_their_memory(
    tmp_path: Path, bound: list[str]
) -> None:
    # before the fix each call's raw frame and decoded result stayed in reference cycles
    # until a full collection: about 8 MiB a call here
    async with run_node(bound, workdir=tmp_path) as node, node.client() as client:
        for _ in range(3):  # the allocator's arenas and the journal's buffers are made
            await client.start_function("big", {"size": SIZE}, timeout=60)
        base_kib = rss_kib(node.pid, "VmRSS")
        worst_kib = base_kib
        for _ in range(CALLS):
            state = await client.start_function("big", {"size": SIZE}, timeout=60)
            assert state.error is None and len(state.result) == SIZE
            worst_kib = max(worst_kib, rss_kib(node.pid, "VmRSS"))
        grew_mib = (worst_kib - base_kib) / 1024
        assert grew_mib < ALLOWED_GROWTH_MIB, f"the daemon's RSS grew by {grew_mib:.0f} MiB"
        _, text, _ = await get_text(node, "/metrics")
        assert metric(text, "noded_results_retained") <= 5  # 4 MiB results: 2 or 4
        assert metric(text, "noded_results_dropped_total" + _label(bound)) >= CALLS - 3
        assert "call.finish" in node.log_text()


def _label(bound: list[str]) -> str:
    limit = bound[0].removeprefix("--").replace("-", "_")
    return f'{{limit="{limit}"}}'
