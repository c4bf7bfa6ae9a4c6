"""Restarts and crashes: computed results survive, leftover processes are killed."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from noded.process.leftovers import kill_leftover_group, process_birth
from rpc_client.errors import UnknownFunctionCall
from rpc_client.protocol import FncId
from tests.helpers import alive, error_of, run_node, start_with_grandchildren, still_alive


async def test_finished_results_survive_a_restart(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        done = await client.start_function(
            "echo", {"value": {"k": [1]}}, timeout=10, request_id="keep-me"
        )
        running = await client.start_function("sleep", {"seconds": 30}, timeout=0)
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        assert second.pid != first.pid
        again = await client.wait_for_function(done.fnc_id, timeout=1)
        assert again.to_wire() == done.to_wire()
        aborted = await client.wait_for_function(running.fnc_id, timeout=1)
        assert error_of(aborted)["type"] == "FunctionAborted"
        assert error_of(aborted)["reason"] == "shutdown"
        # the idempotency key still names the same call
        same = await client.start_function(
            "echo", {"value": {"k": [1]}}, timeout=10, request_id="keep-me"
        )
        assert same.fnc_id == done.fnc_id
        listed = {entry["fnc_id"] for entry in await client.list_functions()}
        assert {done.fnc_id, running.fnc_id} <= listed


async def test_after_a_crash_leftovers_are_killed_and_results_kept(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        done = await client.start_function("add", {"a": 1, "b": 2}, timeout=10)
        fnc_id, kids = await start_with_grandchildren(client, tmp_path)
        leader = FncId.parse(fnc_id).cpid
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
    assert all(alive(pid) for pid in [leader, *kids])  # nobody cleaned up after the crash
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        assert await still_alive([leader, *kids]) == []
        assert (await client.wait_for_function(done.fnc_id, timeout=1)).result == 3
        with pytest.raises(UnknownFunctionCall, match="killed what was left of it"):
            await client.wait_for_function(fnc_id, timeout=1)
    assert "daemon.recovered" in second.log_text()


async def test_results_past_their_ttl_are_not_brought_back(tmp_path: Path) -> None:
    ttl = ["--result-ttl", "1"]
    async with run_node(ttl, workdir=tmp_path) as first, first.client() as client:
        state = await client.start_function("echo", {"value": 1}, timeout=10)
    await asyncio.sleep(1.2)
    async with run_node(ttl, workdir=tmp_path) as second, second.client() as client:
        with pytest.raises(UnknownFunctionCall, match="earlier ganeti-noded"):
            await client.wait_for_function(state.fnc_id, timeout=1)
    # the journal was rewritten at start-up without the expired call
    assert state.fnc_id not in (tmp_path / "state" / "calls.journal").read_text()


async def test_the_journal_records_calls_and_is_private(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as node, node.client() as client:
        one = await client.start_function("echo", {"value": 1}, timeout=10)
        journal = tmp_path / "state" / "calls.journal"
        records = [json.loads(line) for line in journal.read_text().splitlines()]
        mine = [r for r in records if r["fnc_id"] == one.fnc_id]
        assert [r["op"] for r in mine] == ["start", "finish"]
        assert mine[1]["result"] == 1
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600


async def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        kept = await client.start_function("echo", {"value": "kept"}, timeout=10)
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
    with open(tmp_path / "state" / "calls.journal", "ab") as journal:
        journal.write(b'{"op": "finish", "fnc_id": "1:2:3.0000')  # a crash mid-write
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        assert (await client.wait_for_function(kept.fnc_id, timeout=1)).result == "kept"
        assert "journal.bad_record" in second.log_text()


def test_the_journal_is_compacted_to_the_live_calls(tmp_path: Path) -> None:
    from noded.calls.journal import CallJournal
    from noded.calls.table import FunctionCall

    journal = CallJournal(tmp_path)
    calls = [
        FunctionCall(fnc_id=f"1:{n}:1.000000:0123456789abcdef", fn_name="echo", pid=n, started=1.0)
        for n in range(1, 101)
    ]
    for call in calls:
        journal.started(call)
        call.finish(call.pid, None)
        journal.finished(call)
    for call in calls[:90]:
        journal.forget(call.fnc_id)
    journal.compact(calls[90:])
    lines = (tmp_path / "calls.journal").read_text().splitlines()
    assert len(lines) == 10 and all('"op":"finish"' in line for line in lines)
    journal.close()


def test_a_recycled_pid_is_never_signalled() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        birth = process_birth(proc.pid)
        assert birth is not None
        boot_id, ticks = birth.split(":")
        assert kill_leftover_group(proc.pid, f"{boot_id}:{int(ticks) - 100}") is False
        assert kill_leftover_group(proc.pid, f"another-boot:{ticks}") is False
        assert kill_leftover_group(proc.pid, None) is False
        time.sleep(0.1)
        assert proc.poll() is None
        assert kill_leftover_group(proc.pid, birth) is True
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(10)


def test_a_process_birth_is_read_whatever_its_name(tmp_path: Path) -> None:
    odd = tmp_path / "x) (y z"  # /proc/<pid>/stat shows the name in parentheses
    odd.symlink_to(shutil.which("sleep") or "/bin/sleep")
    proc = subprocess.Popen([str(odd), "30"])
    try:
        birth = process_birth(proc.pid)
        assert birth is not None and birth == process_birth(proc.pid)
        line = Path(f"/proc/{proc.pid}/stat").read_text()
        assert int(birth.split(":")[1]) == int(line.rsplit(")", 1)[1].split()[19])
    finally:
        proc.kill()
        proc.wait(10)
    assert process_birth(proc.pid) is None  # reaped: no such process
