"""The state directory fails: a full disk costs a call at most its record, never a slot,
a process or a result; a damaged journal never stops the daemon from starting."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import orjson
import pytest

from rpc_client.errors import InsufficientStorage, UnknownFunctionCall
from tests.disks import small_disk
from tests.helpers import alive, eventually, get_text, metric, run_node


async def test_a_start_that_cannot_be_journaled_runs_nothing_and_gets_507(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "state") as disk:
        async with run_node(workdir=tmp_path) as node, node.client() as client:
            assert (await client.start_function("echo", {"value": 1}, timeout=5)).result == 1
            disk.fill()
            with pytest.raises(InsufficientStorage, match="cannot be written") as info:
                for _ in range(200):  # the journal's last page may still hold a few records
                    await client.start_function("echo", {"value": 0}, timeout=5)
            assert "no function was started" in str(info.value)
            await eventually(lambda: "journal.start_failed" in node.log_text())
            pid = int(re.findall(r"journal.start_failed .*pid=(\d+)", node.log_text())[0])
            assert not alive(pid)
            assert [c for c in await client.list_functions() if not c["finished"]] == []
            disk.free()
            assert (await client.start_function("echo", {"value": 2}, timeout=5)).result == 2


async def test_results_that_cannot_be_journaled_still_finish_and_free_their_slots(
    tmp_path: Path,
) -> None:
    args = ["--max-functions", "2"]
    with small_disk(tmp_path / "state") as disk:
        async with run_node(args, workdir=tmp_path) as node, node.client() as client:
            big = {"seconds": 0.5, "value": "x" * 20_000}  # more than a page's slack
            calls = [await client.start_function("sleep_then", big, timeout=0) for _ in range(2)]
            disk.fill()
            for call in calls:  # their waiters are answered
                state = await client.wait_for_function(call.fnc_id, timeout=10)
                assert state.result == big["value"]
            _, text, _ = await get_text(node, "/metrics")
            assert metric(text, 'noded_journal_write_failures_total{record="finish"}') == 2
            disk.free()
            both = [  # the two slots are free again: not Busy
                await client.start_function("echo", {"value": n}, timeout=5) for n in (1, 2)
            ]
            assert [state.result for state in both] == [1, 2]
            await eventually(lambda: "journal.backlog_written" in node.log_text())
        async with run_node(args, workdir=tmp_path) as again, again.client() as client:
            for call in calls:  # the records written late are there after a restart
                state = await client.wait_for_function(call.fnc_id, timeout=1)
                assert state.result == big["value"]


async def test_a_result_too_deep_to_write_again_is_an_invalid_result_not_a_lost_slot(
    tmp_path: Path,
) -> None:
    # orjson reads 1024 levels but writes 254: the process writes the frame itself
    frame = '{"ok": true, "result": ' + "[" * 300 + "]" * 300 + "}\n"
    async with run_node(["--max-functions", "1"]) as node, node.client() as client:
        state = await client.start_function("write_frame", {"data": frame}, timeout=10)
        assert state.finished and state.error is not None
        assert state.error["type"] == "InvalidResult"
        assert (await client.start_function("echo", {"value": 1}, timeout=5)).result == 1


async def test_a_record_cut_short_by_a_full_disk_does_not_swallow_the_next(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "state") as disk:
        async with run_node(workdir=tmp_path) as node, node.client() as client:
            disk.fill(leave_bytes=4096)
            big = await client.start_function("echo", {"value": "x" * 40_000}, timeout=5)
            assert big.result == "x" * 40_000  # answered, its record waits
            disk.free()
            small = await client.start_function("echo", {"value": "after"}, timeout=5)
            await eventually(lambda: "journal.backlog_written" in node.log_text())
        async with run_node(workdir=tmp_path) as again, again.client() as client:
            for state in (big, small):
                answer = await client.wait_for_function(state.fnc_id, timeout=1)
                assert answer.result == state.result
            assert "journal.bad_record" not in again.log_text()


async def test_a_failed_rewrite_is_retried_and_expiry_goes_on(tmp_path: Path) -> None:
    args = ["--journal-slack-lines", "2", "--result-ttl", "1"]
    with small_disk(tmp_path / "state") as disk:
        async with run_node(args, workdir=tmp_path) as node, node.client() as client:
            running = await client.start_function("sleep", {"seconds": 60}, timeout=0)
            done = [await client.start_function("echo", {"value": n}, timeout=5)
                    for n in range(2)]  # fmt: skip
            disk.fill()  # 5 lines, 3 live calls: the rewrite is due once the echoes expire
            await eventually(lambda: "journal.compact_failed" in node.log_text())
            assert not (disk.path / ".calls.journal.tmp").exists()
            with pytest.raises(UnknownFunctionCall, match="expired"):  # expiry goes on
                await client.wait_for_function(done[0].fnc_id, timeout=0)
            disk.free()
            journal = disk.path / "calls.journal"
            await eventually(lambda: journal.read_bytes().count(b"\n") == 1, timeout_s=20)
            assert running.fnc_id in journal.read_text()
            node.signal(signal.SIGTERM)
            assert await node.wait_exit(20) == 0


async def test_damaged_records_are_skipped_and_the_daemon_starts(tmp_path: Path) -> None:
    good = {"op": "finish", "fnc_id": "1:2:1.000000:0123456789abcdef", "fn_name": "echo",
            "pid": 2, "started": 1.0, "finished_at": 9e9, "request_id": None, "digest": "",
            "result": "kept", "error": None}  # fmt: skip
    damaged = [
        {**good, "fnc_id": "1:3:1.000000:0123456789abcdef", "pid": None},
        {**good, "fnc_id": "1:4:1.000000:0123456789abcdef", "finished_at": "soon"},
        {**good, "fnc_id": "1:5:1.000000:0123456789abcdef", "digest": "not hex"},
        {"op": "start", "fnc_id": "1:6:1.000000:0123456789abcdef", "started": 1.0},
        {"op": "rename", "fnc_id": "1:7:1.000000:0123456789abcdef"},
    ]
    state = tmp_path / "state"
    state.mkdir()
    lines = [orjson.dumps(record) for record in [good, *damaged]]
    (state / "calls.journal").write_bytes(b"\n".join(lines) + b"\n")
    async with run_node(workdir=tmp_path) as node, node.client() as client:
        assert (await client.wait_for_function(str(good["fnc_id"]), timeout=0)).result == "kept"
        assert node.log_text().count("journal.bad_record") == len(damaged)
        assert "wrong type" in node.log_text() and "not hex" in node.log_text()
        with pytest.raises(UnknownFunctionCall):
            await client.wait_for_function("1:4:1.000000:0123456789abcdef", timeout=0)
        assert (await client.start_function("echo", {"value": 1}, timeout=5)).result == 1
