"""The audit log under faults (issue 29, item 18), against real daemons: records cut from
its end are recorded loudly and no seq is used twice; one daemon per audit log; after a
SIGKILL ``audit.head`` is the file's last record, so a rotation while the daemon is down
gives no false alarm; a call lost in a crash gets its ``end`` at the next start."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from masterd.local import LocalNode
from noded.calls.audit import HEAD
from rpc_client.audit import line_hash
from tests.helpers import eventually, run_node, run_noded


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def verify(*files: Path) -> tuple[int, str]:
    """``rpc-cli audit verify FILE...``: its exit status and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "audit", "verify", *map(str, files),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def crash(node: LocalNode) -> None:
    node.signal(signal.SIGKILL)
    assert await node.wait_exit(10) is not None


def second_daemon(state_dir: Path, log: Path) -> subprocess.CompletedProcess[str]:
    """Start a daemon of its own state directory on ``log``; how it ended."""
    args = ["--state-dir", str(state_dir), "--functions", "tests.functions",
            "--audit-log", str(log), "--port", "0"]  # fmt: skip
    return run_noded(*args, env={"PATH": "/usr/bin:/bin"})


async def test_records_cut_from_the_end_are_recorded_loudly_and_no_seq_is_reused(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.log"
    args = ["--audit-log", str(log)]
    async with run_node(args, workdir=tmp_path) as node, node.client() as client:
        for value in range(3):
            await client.start_function("echo", {"value": value}, timeout=10)
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    log.write_bytes(b"".join(lines[:-2]))  # seq 5 and 6 cut away while the daemon is down
    async with run_node(args, workdir=tmp_path) as node, node.client() as client:
        await client.start_function("echo", {"value": 3}, timeout=10)
        assert "ERROR audit.tail_missing" in node.log_text()
    found = records(log)
    assert [r["seq"] for r in found] == [1, 2, 3, 4, 7, 8, 9]
    gap = found[4]
    assert gap["event"] == "tail_missing" and gap["outcome"] == "missing"
    assert "records 5 to 6 are missing from the end" in gap["reason"]
    assert "removed: they were on disk" in gap["reason"]
    status, out = await verify(log)
    assert status == 1
    assert "(seq 7): seq 7 after seq 4: 2 record(s) removed; the node found them" in out


async def test_a_second_daemon_on_the_same_audit_log_refuses_to_start(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    async with run_node(["--audit-log", str(log)], workdir=tmp_path / "one") as first:
        done = await asyncio.to_thread(second_daemon, tmp_path / "two", log)
        assert done.returncode == 1, done.stderr
        assert (
            f"cannot start: the audit log {log} is in use by another ganeti-noded "
            f"(pid {first.pid}); give each daemon its own --audit-log"
        ) in done.stderr
        async with first.client() as client:  # the first goes on, alone in its log
            await client.start_function("echo", {"value": 1}, timeout=10)
    assert [r["seq"] for r in records(log)] == [1, 2]
    # the lock goes with the daemon: the next one starts, even after a SIGKILL
    async with run_node(["--audit-log", str(log)], workdir=tmp_path / "two") as second:
        await crash(second)
    async with run_node(["--audit-log", str(log)], workdir=tmp_path / "one"):
        pass


async def test_a_reopened_audit_log_is_locked_too(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    async with run_node(["--audit-log", str(log)], workdir=tmp_path / "one") as first:
        log.rename(tmp_path / "audit.log.1")  # logrotate's create, then SIGHUP
        first.signal(signal.SIGHUP)
        await eventually(lambda: "audit.reopened" in first.log_text())
        done = await asyncio.to_thread(second_daemon, tmp_path / "two", log)
        assert done.returncode == 1, done.stderr
        assert f"is in use by another ganeti-noded (pid {first.pid})" in done.stderr


async def _flood_denials(node: LocalNode, stop: asyncio.Event) -> None:
    """Requests the policy denies, as fast as they come: a deny record each."""
    body = orjson.dumps({"fn_name": "add", "fn_args": {"a": 1, "b": 2}, "timeout": 0})
    url = f"http://{node.address}/StartFunction"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.put(url, data=body) as response:
                    await response.read()


@pytest.mark.slow
async def test_after_a_sigkill_a_rotation_gives_no_false_alarm(tmp_path: Path) -> None:
    """A SIGKILL under a flood of records, then the file rotated while the daemon is down:
    the next daemon goes on from the last record, and the chain across the files holds."""
    log, policy = tmp_path / "audit.log", tmp_path / "p.toml"
    policy.write_text(
        '[[allow]]\nclients = ["local"]\nfunctions = ["echo"]\n'
        'procedures = ["Identify", "StartFunction", "WaitForFunction"]\n'
    )
    args = ["--audit-log", str(log), "--policy", str(policy)]
    rotated: list[Path] = []
    for round_ in range(3):
        async with run_node(args, workdir=tmp_path) as node:
            stop = asyncio.Event()
            floods = [asyncio.create_task(_flood_denials(node, stop)) for _ in range(16)]
            await eventually(lambda: log.exists() and log.stat().st_size > 100_000)
            await crash(node)
            stop.set()
            await asyncio.gather(*floods)
        head = (tmp_path / "state" / HEAD).read_text().split()
        last = log.read_bytes().splitlines()[-1]
        # written right after each record: at most the one a SIGKILL fell between
        assert orjson.loads(last)["seq"] - int(head[0]) in (0, 1)
        rotated.append(log.rename(tmp_path / f"audit.log.{round_}"))  # logrotate's create
        async with run_node(args, workdir=tmp_path) as node, node.client() as client:
            await client.start_function("echo", {"value": 1}, timeout=10)
        assert "audit.tail_missing" not in node.log_text()
        status, out = await verify(*rotated, log)
        assert status == 0, out


async def test_a_call_lost_in_a_crash_gets_its_end_at_the_next_start(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    args = ["--audit-log", str(log)]
    async with run_node(args, workdir=tmp_path) as first, first.client() as client:
        state = await client.start_function(
            "sleep_then", {"seconds": 60}, timeout=0, request_id="lost-one"
        )
        await crash(first)
    assert [r["event"] for r in records(log)] == ["start"]
    async with run_node(args, workdir=tmp_path):
        pass
    start, end = records(log)
    assert end["event"] == "end" and end["outcome"] == "NodeRestarted"
    assert end["fnc_id"] == state.fnc_id == start["fnc_id"]
    assert end["fn_name"] == "sleep_then" and end["request_id"] == "lost-one"
    assert "killed what was left of it" in end["reason"]
    assert (await verify(log))[0] == 0


async def test_a_reload_without_rotation_keeps_the_file_and_its_lock(tmp_path: Path) -> None:
    """SIGHUP with the audit log not rotated (a policy or TLS reload) is no failure: no
    ``audit.reopen_failed`` naming the daemon itself; the file stays locked and written.
    Rotated, the new file is locked and written."""
    log = tmp_path / "audit.log"
    async with run_node(["--audit-log", str(log)], workdir=tmp_path / "one") as node:
        node.signal(signal.SIGHUP)
        await eventually(lambda: "functions.reloaded" in node.log_text())
        assert "audit.reopen_failed" not in node.log_text()
        assert " ERROR " not in node.log_text()
        async with node.client() as client:
            await client.start_function("echo", {"value": 1}, timeout=10)
        await eventually(lambda: [r["event"] for r in records(log)][-2:] == ["start", "end"])
        done = await asyncio.to_thread(second_daemon, tmp_path / "two", log)
        assert f"is in use by another ganeti-noded (pid {node.pid})" in done.stderr
        log.rename(tmp_path / "audit.log.1")
        node.signal(signal.SIGHUP)
        await eventually(lambda: "audit.reopened" in node.log_text())
        async with node.client() as client:
            await client.start_function("echo", {"value": 2}, timeout=10)
        await eventually(lambda: log.exists() and b'"start"' in log.read_bytes())
        assert records(log)[0]["prev"] == line_hash(
            (tmp_path / "audit.log.1").read_bytes().splitlines()[-1]
        )
        done = await asyncio.to_thread(second_daemon, tmp_path / "three", log)
        assert f"is in use by another ganeti-noded (pid {node.pid})" in done.stderr
        assert " ERROR " not in node.log_text()
