"""Retained results are bounded in bytes, and the journal is rewritten off the event
loop (issue 29, item 6)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from noded.calls.journal import CallJournal
from noded.calls.table import FunctionCall
from rpc_client.errors import UnknownFunctionCall
from tests.helpers import eventually, get_text, metric, run_node

VALUE = "v" * 100_000


async def retained_bytes(node: object) -> float:
    _, text, _ = await get_text(node, "/metrics")  # type: ignore[arg-type]
    return metric(text, "noded_results_retained_bytes")


async def test_retained_results_are_bounded_in_bytes_oldest_dropped_first(
    tmp_path: Path,
) -> None:
    async with run_node(workdir=tmp_path) as node, node.client() as client:
        states = [await client.start_function("echo", {"value": VALUE}, timeout=10)
                  for _ in range(2)]  # fmt: skip
        both = await retained_bytes(node)
        assert both > 2 * len(VALUE)
    # at the edge: exactly the two records fit; one byte less, the oldest goes
    async with run_node(["--max-retained-bytes", str(int(both))], workdir=tmp_path) as node:
        async with node.client() as client:
            for state in states:
                assert (await client.wait_for_function(state.fnc_id, timeout=0)).finished
    bound = ["--max-retained-bytes", str(int(both) - 1)]
    async with run_node(bound, workdir=tmp_path) as node, node.client() as client:
        with pytest.raises(UnknownFunctionCall, match="--max-retained-bytes"):
            await client.wait_for_function(states[0].fnc_id, timeout=0)
        assert (await client.wait_for_function(states[1].fnc_id, timeout=0)).finished
        # a new result (larger than the one dropped) pushes the oldest out, counted
        newest = await client.start_function("echo", {"value": VALUE + "w" * 1000}, timeout=10)
        with pytest.raises(UnknownFunctionCall, match="--max-retained-bytes"):
            await client.wait_for_function(states[1].fnc_id, timeout=0)
        _, text, _ = await get_text(node, "/metrics")
        assert metric(text, 'noded_results_dropped_total{limit="max_retained_bytes"}') == 2
        assert metric(text, "noded_results_retained_bytes") <= int(both) - 1
    # the newest is kept even when it alone is over the bound
    async with run_node(["--max-retained-bytes", "1000"], workdir=tmp_path) as node:
        async with node.client() as client:
            assert (
                await client.wait_for_function(newest.fnc_id, timeout=0)
            ).result == newest.result


def a_call(n: int, value: object = None) -> FunctionCall:
    call = FunctionCall(
        fnc_id=f"1:{n}:1.000000:0123456789abcdef", fn_name="echo", pid=n, started=1.0
    )
    if value is not None:
        call.finish(value, None)
    return call


async def test_records_written_during_a_rewrite_are_kept(tmp_path: Path) -> None:
    journal = CallJournal(tmp_path)
    kept, dropped, running = a_call(2, "kept"), a_call(3, "dropped"), a_call(4)
    for call in (kept, dropped, running):
        journal.started(call)
    for call in (kept, dropped):
        journal.finished(call)
    journal.forget(dropped.fnc_id)
    rewrite = asyncio.create_task(journal.compact_off_loop([kept, running]))
    await asyncio.sleep(0)  # the rewrite has begun: its file is written in a thread
    late = a_call(5)
    journal.started(late)
    running.finish("done", None)
    journal.finished(running)
    journal.forget(kept.fnc_id)
    await rewrite
    journal.close()
    found = CallJournal(tmp_path).replay(result_ttl_s=1e12)
    assert [call.result for call in found.finished] == ["done"]
    assert [left.fnc_id for left in found.unfinished] == [late.fnc_id]
    assert len((tmp_path / "calls.journal").read_bytes().splitlines()) == 2 + 3
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
async def test_the_daemon_answers_while_a_big_journal_is_rewritten(tmp_path: Path) -> None:
    size = 24 << 20
    args = ["--journal-slack-lines", "4", "--max-result-bytes", str(64 << 20),
            "--max-retained-bytes", str(1 << 30), "--result-ttl", "600"]  # fmt: skip
    journal = tmp_path / "state" / "calls.journal"
    async with run_node(args, workdir=tmp_path) as node, node.client() as client:
        for _ in range(8):  # 192 MiB of results, kept in the journal
            await client.start_function("big", {"size": size}, timeout=60)
        inode = os.stat(journal).st_ino
        worst = 0.0
        # small calls make the journal longer than its slack: a rewrite is due
        for n in range(6):
            await client.start_function("echo", {"value": n}, timeout=10)
        end = time.monotonic() + 30
        while os.stat(journal).st_ino == inode and time.monotonic() < end:
            began = time.monotonic()
            await client.identify()
            worst = max(worst, time.monotonic() - began)
            await asyncio.sleep(0.01)
        assert os.stat(journal).st_ino != inode, "the journal was not rewritten"
        await eventually(lambda: journal.stat().st_size > 8 * size)
    assert worst < 0.5, f"Identify took {worst:.3f} s during the rewrite"
