"""rpc-cli --nodes nodes.toml gather: one line per node, a summary, the exit status."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import orjson
import pytest

from masterd.local import free_port
from tests.helpers import NodeFactory, eventually


async def gather_cli(nodes_file: Path, *args: str) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "masterd.cli",
        "--nodes",
        str(nodes_file),
        "gather",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines()


def write_nodes_file(tmp_path: Path, ports: dict[str, int]) -> Path:
    """``nodes.toml`` naming each node at its loopback port, in the order given."""
    path = tmp_path / "nodes.toml"
    entry = '[[node]]\nname = "{}"\naddress = "127.0.0.1"\nport = {}\n'
    path.write_text("".join(entry.format(name, port) for name, port in ports.items()))
    return path


async def nodes_file(tmp_path: Path, make_node: NodeFactory, bad: bool = True) -> Path:
    good = await make_node("good")
    failing = await make_node("failing", fail=True)
    ports = {"good": good.port, "failing": failing.port}
    if bad:
        ports["gone"] = free_port()
    return write_nodes_file(tmp_path, ports)


async def test_text_lines_and_summary(tmp_path: Path, make_node: NodeFactory) -> None:
    status, lines = await gather_cli(await nodes_file(tmp_path, make_node), "node_behaviour")
    assert status == 4
    by_node = {line.split()[0]: line for line in lines[:-1]}
    assert set(by_node) == {"good", "failing", "gone"}
    assert by_node["good"].split()[1] == "OK"
    assert "FunctionFailed: OSError: disk failed on failing" in by_node["failing"]
    assert by_node["gone"].split()[1] == "UNREACHABLE"
    assert lines[-1] == "3 nodes: 1 ok, 1 failed (failing), 0 timed out, 1 unreachable (gone)"


async def test_json_lines_only_failed(tmp_path: Path, make_node: NodeFactory) -> None:
    path = await nodes_file(tmp_path, make_node, bad=False)
    status, lines = await gather_cli(path, "node_behaviour", "--json", "--only-failed")
    assert status == 1
    entries = [orjson.loads(line) for line in lines]
    assert [e["node"] for e in entries[:-1]] == ["failing"]
    assert entries[0]["error"]["remote_type"] == "OSError"
    assert entries[0]["error"]["message"] == "disk failed on failing"  # not "OSError: ..."
    assert entries[-1]["summary"]["ok"] == ["good"]


async def test_all_ok_exits_0(tmp_path: Path, make_node: NodeFactory) -> None:
    path = await nodes_file(tmp_path, make_node, bad=False)
    status, lines = await gather_cli(path, "echo", '{"value": 7}')
    assert status == 0
    assert lines[-1].startswith("2 nodes: 2 ok")


async def test_gather_without_nodes_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "masterd.cli",
        "gather",
        "echo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"--nodes" in err


@pytest.mark.slow
async def test_ctrl_c_names_every_node_left_and_resume_finishes_the_fan_out(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    first, second = await make_node("first"), await make_node("second")
    path = write_nodes_file(tmp_path, {"first": first.port, "second": second.port})
    batch = tmp_path / "batch.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "--nodes", str(path), "gather", "sleep",
        '{"seconds": 2}', "--window", "1", "--wait", "0.3", "--batch-file", str(batch),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:  # the first node named its call (at its first answer); the second waits its turn
        await eventually(lambda: batch.exists() and '"fnc_id"' in batch.read_text(), 30)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    lines = {line.split()[0]: line.split(maxsplit=2)[1:] for line in out.decode().splitlines()}
    assert proc.returncode == 130, err
    async with first.client() as client:
        (running,) = [call for call in await client.list_functions() if not call["finished"]]
    assert lines == {"first": ["RUNNING", running["fnc_id"]],
                     "second": ["NOT", "STARTED nothing was asked of it"]}  # fmt: skip
    assert "of the rest, 1 running, 0 asked (a call may run), 1 not started" in err.decode()
    assert f"gather --resume {batch}" in err.decode()

    status, resumed = await gather_cli(path, "--resume", str(batch))
    assert status == 0 and resumed[-1].startswith("2 nodes: 2 ok"), resumed
    for node in (first, second):  # nothing ran twice
        async with node.client() as client:
            assert [call["fn_name"] for call in await client.list_functions()] == ["sleep"]


async def test_one_failed_node_is_said_in_the_singular(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    """'1 node failed', not '1 nodes failed'."""
    failing, good = await make_node("failing", fail=True), await make_node("good")
    path = write_nodes_file(tmp_path, {"failing": failing.port, "good": good.port})
    status, lines = await gather_cli(path, "node_behaviour", "--window", "1", "--max-failures", "0")
    assert status == 1
    by_node = {line.split()[0]: line for line in lines[:-1]}
    assert "not started: 1 node failed, more than max_failures=0" in by_node["good"]


async def test_elapsed_is_the_calls_own_time_not_its_wait_for_the_window(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    """With --window 1 the second node waits 1.5 s for a place; its elapsed_s was that
    wait plus its call (3 s and more), now only its call's 1.5 s."""
    first, second = await make_node("first"), await make_node("second")
    path = write_nodes_file(tmp_path, {"first": first.port, "second": second.port})
    status, lines = await gather_cli(path, "sleep", '{"seconds": 1.5}', "--window", "1", "--json")
    assert status == 0
    elapsed = {entry["node"]: entry["elapsed_s"] for entry in map(orjson.loads, lines[:-1])}
    assert 1.5 <= elapsed["first"] < 2.8 and 1.5 <= elapsed["second"] < 2.8, elapsed
    status, lines = await gather_cli(path, "sleep", '{"seconds": 1.5}', "--window", "1")
    took = [float(line.split()[2].removesuffix("s")) for line in lines[:-1]]
    assert all(1.5 <= seconds < 2.8 for seconds in took), lines


async def test_a_node_never_asked_has_no_elapsed_time(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    failing, good = await make_node("failing", fail=True), await make_node("good")
    path = write_nodes_file(tmp_path, {"failing": failing.port, "good": good.port})
    args = ("node_behaviour", "--window", "1", "--max-failures", "0")
    _, lines = await gather_cli(path, *args, "--json")
    entries = {entry["node"]: entry for entry in map(orjson.loads, lines[:-1])}
    assert entries["good"]["outcome"] == "skipped" and entries["good"]["elapsed_s"] is None
    assert entries["failing"]["elapsed_s"] >= 0
    _, lines = await gather_cli(path, *args)
    assert [line.split()[:3] for line in lines[:-1]][-1] == ["good", "SKIPPED", "-"]
