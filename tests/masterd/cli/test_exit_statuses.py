"""What rpc-cli's exit statuses mean, as its --help says, against a real node: an unknown
or lost fnc_id is a refused request, exit 2, and the help of the commands that can meet
one says so (it listed 2 only as "usage error")."""

from __future__ import annotations

import asyncio
import sys

import pytest

from masterd.cli.exits import EXIT_USAGE
from masterd.local import LocalNode

UNKNOWN = "1:2:1.000000:0123456789abcdef"


async def rpc_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("command", ["abort", "wait", "output"])
async def test_an_unknown_call_exits_2_and_the_help_says_what_2_means(
    shared_node: LocalNode, command: str
) -> None:
    status, _, err = await rpc_cli("--node", shared_node.address, command, UNKNOWN)
    assert status == EXIT_USAGE, err
    assert "UnknownFunctionCall" in err or "NodeRestarted" in err  # unknown, or lost
    _, help_text, _ = await rpc_cli(command, "--help")
    two = [line for line in help_text.splitlines() if line.startswith("    2  ")]
    assert two == ["    2  usage error, or the node refused it (an unknown or lost call, bad args)"]
