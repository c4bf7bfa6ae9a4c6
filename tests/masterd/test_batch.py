"""The batch file of a fan-out: one user at a time, a torn last line, bad records, and the
options a resume may change; against real daemons."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from masterd.batch import BatchFile, BatchFileBusy, lock_holder, read_progress
from masterd.cluster import Cluster
from masterd.local import LocalNode
from masterd.node import Node
from tests.helpers import eventually, node_args, node_env

NAMES = ("n1", "n2", "n3")


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LocalNode]]:
    """Three daemons whose ``node_behaviour`` takes a second."""
    started = {}
    for name in NAMES:
        env = node_env({"TEST_NAME": name, "TEST_DELAY_S": "1"})
        workdir = tmp_path_factory.mktemp(name)
        started[name] = asyncio.run(LocalNode.start(node_args(), env=env, workdir=workdir))
    yield started
    for daemon in started.values():
        asyncio.run(daemon.stop())


def nodes_of(daemons: dict[str, LocalNode]) -> list[Node]:
    return [Node(name, "127.0.0.1", daemon.port) for name, daemon in daemons.items()]


def nodes_file(tmp_path: Path, daemons: dict[str, LocalNode]) -> Path:
    path = tmp_path / "nodes.toml"
    path.write_text("".join(f'[[node]]\nname = "{n.name}"\naddress = "127.0.0.1"\n'
                            f"port = {n.port}\n" for n in nodes_of(daemons)))  # fmt: skip
    return path


def write_batch(path: Path, count: Path, *records: bytes, **options: Any) -> None:
    """A batch file as a master that died would have left it."""
    header = {"batch": 1, "fn_name": "node_behaviour", "fn_args": {"count_path": str(count)},
              "timeout": 60, "wait_s": 10, "abort_after": None, "window": None, "canary": 0,
              "max_failures": None, "nodes": list(NAMES), **options}  # fmt: skip
    path.write_bytes(b"".join([orjson.dumps(header) + b"\n", *records]))


def runs(count: Path) -> list[str]:
    return sorted(count.read_text().split()) if count.exists() else []


async def resumed(batch: Path, daemons: dict[str, LocalNode], **options: Any) -> dict[str, Any]:
    async with Cluster(nodes_of(daemons)) as cluster:
        return {r.node: r async for r in cluster.resume(batch, **options)}


@contextlib.asynccontextmanager
async def rpc_cli(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_resumes_of_one_file_under_any_name_are_refused_while_one_runs(
    tmp_path: Path, daemons: dict[str, LocalNode]
) -> None:
    """The lock is the file's own (its inode): the same path, a symlink to it and a hard
    link to it are all one batch file, and each node runs once."""
    batch, count = tmp_path / "batch.jsonl", tmp_path / "count"
    write_batch(batch, count, window=1)
    (tmp_path / "symlink.jsonl").symlink_to(batch.name)
    os.link(batch, tmp_path / "hardlink.jsonl")
    nodes = str(nodes_file(tmp_path, daemons))
    async with rpc_cli("--nodes", nodes, "gather", "--resume", str(batch)) as first:
        await eventually(lambda: lock_holder(batch.stat()) == first.pid, 30)
        errors = await asyncio.gather(*(
            second_resume(nodes, tmp_path / name)
            for name in ("batch.jsonl", "symlink.jsonl", "hardlink.jsonl")
        ))  # fmt: skip
        assert first.returncode is None, "the first resume was still running"
        out, first_err = await asyncio.wait_for(first.communicate(), 60)
    holder = f"is in use by pid {first.pid} on {socket.gethostname()} since "
    for err in errors:
        assert holder in err and "Traceback" not in err, err
    assert first.returncode == 0, first_err
    assert "3 nodes: 3 ok" in out.decode()
    assert runs(count) == list(NAMES)
    assert lock_holder(batch.stat()) is None  # released
    assert sorted(p.name for p in tmp_path.iterdir() if "jsonl" in p.name) == [
        "batch.jsonl", "hardlink.jsonl", "symlink.jsonl"]  # no sidecar  # fmt: skip


async def second_resume(nodes: str, batch: Path) -> str:
    """A resume that must be refused (exit 2); its stderr."""
    async with rpc_cli("--nodes", nodes, "gather", "--resume", str(batch)) as second:
        _, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 2, err
    return err.decode()


async def test_a_new_run_on_a_held_batch_file_is_refused(
    tmp_path: Path, daemons: dict[str, LocalNode]
) -> None:
    batch, count = tmp_path / "batch.jsonl", tmp_path / "count"
    write_batch(batch, count)
    before = batch.read_bytes()
    held, _ = BatchFile.reopen(batch)
    try:
        async with Cluster(nodes_of(daemons)) as cluster:
            with pytest.raises(BatchFileBusy, match=f"in use by pid {os.getpid()} on "):
                async for _ in cluster.call_many("echo", {"value": 1}, 5, batch_file=batch):
                    pass
    finally:
        held.close()
    assert batch.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.jsonl"]  # no temporary left


async def test_a_name_beside_the_batch_file_redirects_no_write(
    tmp_path: Path, daemons: dict[str, LocalNode]
) -> None:
    """A symlink where an older version kept its lock (``FILE.lock``), or at the batch
    file's own name, never makes the master write to (or empty) what it points to."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious content\n")
    batch = tmp_path / "batch.jsonl"
    Path(f"{batch}.lock").symlink_to(victim)
    async with Cluster(nodes_of(daemons)) as cluster:
        results = [r async for r in cluster.call_many("echo", {"value": 1}, 30, batch_file=batch)]
        assert [r.ok for r in results] == [True] * len(NAMES)
        other = tmp_path / "other.jsonl"
        other.symlink_to(victim)
        with pytest.raises(ValueError, match=f"the batch file {other} exists: resume it"):
            async for _ in cluster.call_many("echo", {"value": 1}, 5, batch_file=other):
                pass
    assert victim.read_bytes() == b"precious content\n"
    assert len(read_progress(batch).finished) == len(NAMES)


async def test_a_torn_last_line_is_cut_off_and_blocks_no_later_resume(
    tmp_path: Path, daemons: dict[str, LocalNode], caplog: pytest.LogCaptureFixture
) -> None:
    batch, count = tmp_path / "batch.jsonl", tmp_path / "count"
    write_batch(batch, count, b'{"node":"n1","ok":true,"value":"n1"}\n', b'{"node":"n2","req')
    results = await resumed(batch, daemons)
    assert {name: r.ok for name, r in results.items()} == dict.fromkeys(NAMES, True)
    assert "batch.torn_line_dropped" in caplog.text
    assert runs(count) == ["n2", "n3"]  # n1 had finished
    again = await resumed(batch, daemons)  # the file is whole again: nothing runs
    assert {name: r.value for name, r in again.items()} == {n: n for n in NAMES}
    assert runs(count) == ["n2", "n3"]


async def test_a_last_record_without_its_newline_is_kept(
    tmp_path: Path, daemons: dict[str, LocalNode]
) -> None:
    batch, count = tmp_path / "batch.jsonl", tmp_path / "count"
    write_batch(batch, count, b'{"node":"n1","ok":true,"value":"n1"}')
    await resumed(batch, daemons)
    assert runs(count) == ["n2", "n3"]
    assert len(read_progress(batch).finished) == 3


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([b'{"node":"n2","req\n', b'{"node":"n1","ok":true,"value":1}\n'],
         r"batch.jsonl:2: not JSON, and not the last line"),
        ([b'{"request_id":"abc"}\n'], r'batch.jsonl:2: not a record of a node \(no "node"\)'),
        ([b"[1, 2]\n"], r'batch.jsonl:2: not a record of a node \(no "node"\)'),
        ([b'{"node":"n9","request_id":"abc"}\n'], r"batch.jsonl:2: node 'n9' is not one"),
        ([b'{"node":"n1","ok":false}\n'], r"batch.jsonl:2: not a record this version writes"),
    ],
)  # fmt: skip
async def test_a_bad_record_is_refused_with_its_line(
    tmp_path: Path, daemons: dict[str, LocalNode], records: list[bytes], message: str
) -> None:
    batch, count = tmp_path / "batch.jsonl", tmp_path / "count"
    write_batch(batch, count, *records)
    with pytest.raises(ValueError, match=message):
        await resumed(batch, daemons)
    assert runs(count) == []
    assert lock_holder(batch.stat()) is None  # the failed resume let go of the file


async def test_resume_applies_a_new_window(tmp_path: Path, daemons: dict[str, LocalNode]) -> None:
    batch, count = tmp_path / "batch.jsonl", tmp_path / "count"
    write_batch(batch, count, window=1)
    async with Cluster(nodes_of(daemons)) as cluster:
        async with contextlib.aclosing(cluster.resume(batch, window=3)) as results:
            async for _ in results:  # each call takes a second: all three had started
                assert runs(count) == list(NAMES)
                break


async def test_rpc_cli_resume_applies_timeout_and_refuses_canary(
    tmp_path: Path, daemons: dict[str, LocalNode]
) -> None:
    batch, count = tmp_path / "batch.jsonl", tmp_path / "count"
    write_batch(batch, count, b'{"node":"n1","req')
    nodes = str(nodes_file(tmp_path, daemons))
    async with rpc_cli("--nodes", nodes, "gather", "--resume", str(batch), "--canary", "1") as cli:
        _, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 2
    assert "--canary cannot be given with --resume: the canaries are the first" in err.decode()
    args = ("--nodes", nodes, "gather", "--resume", str(batch), "--timeout", "0.3")
    async with rpc_cli(*args) as cli:
        out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 4, err  # the calls take a second: timed out at 0.3 s
    assert "3 nodes: 0 ok, 0 failed, 3 timed out" in out.decode()
    assert f"WARNING batch.torn_line_dropped path={batch} line=2" in err.decode()
