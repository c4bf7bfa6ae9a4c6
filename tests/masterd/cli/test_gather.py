"""rpc-cli --nodes nodes.toml gather: one line per node, a summary, the exit status."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from masterd.local import free_port
from tests.helpers import NodeFactory


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


async def nodes_file(tmp_path: Path, make_node: NodeFactory, bad: bool = True) -> Path:
    good = await make_node("good")
    failing = await make_node("failing", fail=True)
    text = f'[[node]]\nname = "good"\naddress = "127.0.0.1"\nport = {good.port}\n'
    text += f'[[node]]\nname = "failing"\naddress = "127.0.0.1"\nport = {failing.port}\n'
    if bad:
        text += f'[[node]]\nname = "gone"\naddress = "127.0.0.1"\nport = {free_port()}\n'
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    return path


async def test_text_lines_and_summary(tmp_path: Path, make_node: NodeFactory) -> None:
    status, lines = await gather_cli(await nodes_file(tmp_path, make_node), "node_behaviour")
    assert status == 4
    by_node = {line.split()[0]: line for line in lines[:-1]}
    assert set(by_node) == {"good", "failing", "gone"}
    assert by_node["good"].split()[1] == "OK"
    assert "OSError: disk failed on failing" in by_node["failing"]
    assert by_node["gone"].split()[1] == "UNREACHABLE"
    assert lines[-1] == "3 nodes: 1 ok, 1 failed (failing), 0 timed out, 1 unreachable (gone)"


async def test_json_lines_only_failed(tmp_path: Path, make_node: NodeFactory) -> None:
    path = await nodes_file(tmp_path, make_node, bad=False)
    status, lines = await gather_cli(path, "node_behaviour", "--json", "--only-failed")
    assert status == 1
    entries = [orjson.loads(line) for line in lines]
    assert [e["node"] for e in entries[:-1]] == ["failing"]
    assert entries[0]["error"]["remote_type"] == "OSError"
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
