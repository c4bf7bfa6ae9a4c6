"""``rpc-cli ... | head``: a reader of stdout that goes away ends rpc-cli quietly (141),
never with a BrokenPipeError traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from masterd.local import LocalNode
from tests.helpers import NodeFactory

BROKEN_PIPE = 141


@pytest.fixture
def node(shared_node: LocalNode) -> LocalNode:
    return shared_node


async def rpc_cli_into_a_closed_pipe(*args: str) -> tuple[int, str]:
    """rpc-cli with its stdout a pipe whose reader is gone before it writes a byte."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "masterd.cli", *args,
            stdout=writer, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(writer)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def nodes_file(tmp_path: Path, make_node: NodeFactory, count: int) -> Path:
    text = ""
    for n in range(count):
        daemon = await make_node(f"n{n}", delay_s=0.3 * n)
        text += f'[[node]]\nname = "n{n}"\naddress = "127.0.0.1"\nport = {daemon.port}\n'
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "command", [("list",), ("list", "--json"), ("identify",), ("call", "add", '{"a": 1, "b": 2}')]
)
async def test_a_node_command_into_a_closed_pipe_ends_quietly(
    node: LocalNode, command: tuple[str, ...]
) -> None:
    status, err = await rpc_cli_into_a_closed_pipe("--node", node.address, *command)
    assert (status, err) == (BROKEN_PIPE, "")


async def test_help_and_version_into_a_closed_pipe_end_quietly() -> None:
    for option in ("--help", "--version"):  # argparse itself ignores a failed write
        status, err = await rpc_cli_into_a_closed_pipe(option)
        assert status in (0, BROKEN_PIPE) and err == "", option


async def test_gather_and_nodes_into_a_closed_pipe_or_head_1_end_quietly(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    path = await nodes_file(tmp_path, make_node, 2)
    for command in (("gather", "echo", "--json"), ("nodes",)):
        status, err = await rpc_cli_into_a_closed_pipe("--nodes", str(path), *command)
        assert (status, err) == (BROKEN_PIPE, ""), command
    # head takes the first node's line and goes; the later nodes' lines find no reader
    script = f"{sys.executable} -m masterd.cli --nodes {path} gather node_behaviour | head -1"
    proc = await asyncio.create_subprocess_exec(
        "/bin/bash", "-c", f"set -o pipefail; {script}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().split()[:2] == ["n0", "OK"]
    assert (proc.returncode, stderr.decode()) == (BROKEN_PIPE, "")
