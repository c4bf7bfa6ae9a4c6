"""The audit log of a real daemon: every event, in order, in a chain that
``rpc-cli audit verify`` checks across rotations and restarts; a start that cannot be
audited does not run."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from masterd.local import LocalNode
from noded.calls.audit import HEAD, AuditLog
from noded.metrics import Metrics
from noded.policy.rules import Caller
from rpc_client.audit import GENESIS, args_sha256, line_hash
from rpc_client.errors import InsufficientStorage
from tests.disks import small_disk
from tests.helpers import eventually, get_text, metric, node_args, node_env, run_node

FIELDS = ["seq", "at", "event", "client", "peer", "procedure", "fn_name", "args_sha256",
          "request_id", "fnc_id", "outcome"]  # fmt: skip


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


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    workdir = tmp_path_factory.mktemp("audited")
    args = node_args(["--audit-log", str(workdir / "audit.log")])
    node = asyncio.run(LocalNode.start(args, env=node_env(), workdir=workdir))
    yield node
    asyncio.run(node.stop())


def audit_log(node: LocalNode) -> Path:
    return node.workdir / "audit.log"


async def test_every_event_is_audited_in_order_in_an_intact_chain(audited: LocalNode) -> None:
    async with audited.client() as client:
        done = await client.start_function("add", {"a": 1, "b": 2}, timeout=10, request_id="r-1")
        running = await client.start_function("sleep_then", {"seconds": 30}, timeout=0)
        await client.abort_function(running.fnc_id)
    await eventually(lambda: any(r["fnc_id"] == running.fnc_id and r["event"] == "end"
                                 for r in records(audit_log(audited))))  # fmt: skip
    log = records(audit_log(audited))
    assert all(list(record)[: len(FIELDS)] == FIELDS for record in log)
    assert [r["seq"] for r in log] == list(range(1, len(log) + 1))
    assert log[0]["prev"] == GENESIS
    first = [(r["event"], r["outcome"]) for r in log if r["fnc_id"] == done.fnc_id]
    assert first == [("start", None), ("end", "ok")]
    start = next(r for r in log if r["fnc_id"] == done.fnc_id)
    assert (start["client"], start["procedure"], start["fn_name"], start["request_id"]) == (
        "local", "StartFunction", "add", "r-1",
    )  # fmt: skip
    assert start["args_sha256"] == args_sha256({"b": 2, "a": 1})
    assert start["peer"].startswith("127.0.0.1:") and "args" not in start
    second = [(r["event"], r["outcome"]) for r in log if r["fnc_id"] == running.fnc_id]
    assert second == [("start", None), ("abort", "running"), ("end", "FunctionAborted")]
    status, out = await verify(audit_log(audited))
    assert (status, out) == (0, f"{len(log)} records, seq 1 to {len(log)}: the chain holds\n")


async def test_verify_says_one_record_in_the_singular(audited: LocalNode, tmp_path: Path) -> None:
    async with audited.client() as client:
        await client.start_function("echo", {"value": 1}, timeout=10)
    await eventually(lambda: len(records(audit_log(audited))) >= 2)
    first = tmp_path / "first.log"
    first.write_bytes(audit_log(audited).read_bytes().splitlines(keepends=True)[0])
    assert await verify(first) == (0, "1 record, seq 1 to 1: the chain holds\n")


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "insert"])
async def test_tampering_is_found_by_audit_verify(
    audited: LocalNode, tmp_path: Path, tamper: str
) -> None:
    async with audited.client() as client:
        for value in range(3):
            await client.start_function("echo", {"value": value}, timeout=10)
    lines = audit_log(audited).read_bytes().splitlines(keepends=True)
    assert len(lines) >= 6
    target = 2  # the third record
    if tamper == "edit":
        lines[target] = lines[target].replace(b'"client":"local"', b'"client":"master"')
    elif tamper == "delete":
        del lines[target]
    elif tamper == "swap":
        lines[target], lines[target + 1] = lines[target + 1], lines[target]
    else:
        lines.insert(target, lines[target])
    copy = tmp_path / "tampered.log"
    copy.write_bytes(b"".join(lines))
    status, out = await verify(copy)
    assert status == 1
    broken = {"edit": target + 2, "delete": target + 1, "swap": target + 1, "insert": target + 2}
    assert f"audit chain broken at {copy}:{broken[tamper]} " in out


async def test_the_chain_continues_across_a_rotation(audited: LocalNode) -> None:
    log = audit_log(audited)
    rotated = log.with_name("audit.log.1")
    async with audited.client() as client:
        await client.start_function("echo", {"value": "before"}, timeout=10)
        shutil.move(log, rotated)  # logrotate's create: move it away, then SIGHUP
        await client.start_function("echo", {"value": "still the old file"}, timeout=10)
        audited.signal(signal.SIGHUP)
        await eventually(lambda: "audit.reopened" in audited.log_text())
        await client.start_function("echo", {"value": "after"}, timeout=10)
    old, new = records(rotated), records(log)
    assert new[0]["seq"] == old[-1]["seq"] + 1
    assert new[0]["prev"] == line_hash(rotated.read_bytes().splitlines()[-1])
    status, out = await verify(rotated, log)
    assert status == 0 and f"{len(old) + len(new)} records" in out
    status, out = await verify(log)
    assert status == 0 and f"holds from seq {new[0]['seq']}" in out


async def test_the_chain_continues_across_restarts(tmp_path: Path) -> None:
    log, moved = tmp_path / "audit.log", tmp_path / "audit.log.old"
    args = ["--audit-log", str(log), "--audit-args"]
    for _ in range(2):
        async with run_node(args, workdir=tmp_path) as node, node.client() as client:
            await client.start_function("echo", {"value": [1, "two"]}, timeout=10)
    assert [r["seq"] for r in records(log)] == [1, 2, 3, 4]
    assert records(log)[0]["args"] == {"value": [1, "two"]}
    shutil.move(log, moved)  # rotated while the daemon was down: the head is in its state
    assert (tmp_path / "state" / HEAD).exists()
    async with run_node(args, workdir=tmp_path) as node, node.client() as client:
        await client.start_function("echo", {"value": 3}, timeout=10)
    assert records(log)[0]["seq"] == 5
    assert await verify(moved, log) == (0, "6 records, seq 1 to 6: the chain holds\n")


async def test_a_start_that_cannot_be_audited_does_not_run_and_gets_507(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with small_disk(tmp_path / "audit") as disk:
        args = ["--audit-log", str(disk.path / "audit.log")]
        async with run_node(args, workdir=tmp_path / "node") as node, node.client() as client:
            await client.start_function("count_run", {"path": str(runs)}, timeout=10)
            disk.fill()
            with pytest.raises(InsufficientStorage, match=r"audit log .* cannot be written"):
                for _ in range(100):  # the last page of the file may take a few more records
                    await client.start_function("count_run", {"path": str(runs)}, timeout=10)
            ran = runs.read_text().count("run")
            assert "audit.write_failed" in node.log_text()
            _, text, _ = await get_text(node, "/metrics")
            assert metric(text, 'noded_audit_write_failures_total{record="start"}') >= 1
            disk.free()
            await client.start_function("count_run", {"path": str(runs)}, timeout=10)
            assert runs.read_text().count("run") == ran + 1
        status, _ = await verify(disk.path / "audit.log")
        assert status == 0  # a refused record left nothing behind


async def test_starts_that_come_together_share_one_fsync(tmp_path: Path) -> None:
    metrics = Metrics()
    audit = AuditLog(tmp_path / "audit.log", tmp_path / "state", metrics)
    caller = Caller("master", "127.0.0.1:40000", "ab" * 32)
    fields = audit.fields(caller, "StartFunction", fn_name="echo", fn_args={})
    await asyncio.gather(*(audit.append_durable("start", fields) for _ in range(32)))
    assert metrics.audit_fsyncs._value.get() == 1
    await audit.close()
    assert [r["seq"] for r in records(tmp_path / "audit.log")] == list(range(1, 33))
