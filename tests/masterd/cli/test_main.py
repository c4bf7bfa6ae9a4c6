"""rpc-cli as a user runs it: a real process against a real daemon; JSON out, exit codes."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import pytest

from masterd.cli.main import parse_node
from masterd.local import LocalNode, free_port


@pytest.fixture
def node(shared_node: LocalNode) -> LocalNode:
    return shared_node


async def rpc_cli(node: LocalNode | str, *args: str) -> tuple[int, Any, str]:
    address = node if isinstance(node, str) else node.address
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "masterd.cli",
        "--node",
        address,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, orjson.loads(out) if out.strip() else None, err.decode()


async def test_call_prints_the_state_and_exits_0(node: LocalNode) -> None:
    status, state, _ = await rpc_cli(node, "call", "add", '{"a": 1, "b": 2}')
    assert status == 0
    assert state["finished"] is True and state["result"] == 3


async def test_call_shows_progress_on_stderr_while_it_polls(node: LocalNode) -> None:
    status, state, err = await rpc_cli(node, "call", "sleep", '{"seconds": 1}', "--wait", "0.3")
    assert status == 0 and state["result"] == 1
    assert "running" in err and "elapsed" in err


async def test_start_with_timeout_0_then_wait(node: LocalNode) -> None:
    status, state, _ = await rpc_cli(node, "start", "sleep", '{"seconds": 0.5}')
    assert status == 3 and state["finished"] is False
    status, done, _ = await rpc_cli(node, "wait", state["fnc_id"], "--timeout", "10")
    assert status == 0 and done["result"] == 0.5


async def test_start_with_request_id_is_idempotent(node: LocalNode) -> None:
    _, one, _ = await rpc_cli(
        node, "start", "echo", '{"value": 1}', "--timeout", "5", "--request-id", "cli-1"
    )
    _, two, _ = await rpc_cli(
        node, "start", "echo", '{"value": 1}', "--timeout", "5", "--request-id", "cli-1"
    )
    assert one["fnc_id"] == two["fnc_id"]


async def test_a_failed_function_exits_1_with_its_error(node: LocalNode) -> None:
    status, state, err = await rpc_cli(node, "call", "fail", '{"message": "boom"}')
    assert status == 1
    assert state["error"]["type"] == "RuntimeError"
    assert "RuntimeError: boom" in err


async def test_a_deadline_passing_exits_3_with_the_fnc_id(node: LocalNode) -> None:
    status, state, _ = await rpc_cli(node, "call", "sleep", '{"seconds": 5}', "--timeout", "0.5")
    assert status == 3 and state["fnc_id"]
    status, state, _ = await rpc_cli(node, "abort", state["fnc_id"])
    assert status == 0 and state["error"]["reason"] == "aborted"  # the abort succeeded


@pytest.mark.parametrize(
    "args",
    [
        ("call", "nope"),
        ("call", "add", '{"a": "x", "b": 1}'),
        ("call", "add", "[1, 2]"),
        ("call", "add", "{not json"),
        ("wait", "not-an-id"),
        ("start", "echo", '{"value": 1}', "--timeout", "-1"),
    ],
)
async def test_usage_errors_exit_2_with_a_one_line_message(
    node: LocalNode, args: tuple[str, ...]
) -> None:
    status, out, err = await rpc_cli(node, *args)
    assert status == 2
    assert out is None
    assert err.startswith("rpc-cli: ") and err.count("\n") == 1


async def test_bad_command_line_exits_2() -> None:
    status, _, err = await rpc_cli("127.0.0.1:1", "frobnicate")
    assert status == 2 and "invalid choice: 'frobnicate'" in err and "rpc-cli --help" in err
    assert err.count("\n") == 1


async def test_an_unreachable_node_exits_4() -> None:
    status, out, err = await rpc_cli(f"127.0.0.1:{free_port()}", "identify")
    assert status == 4 and out is None
    assert "NodeUnreachable" in err


async def test_list_identify_and_functions(node: LocalNode) -> None:
    status, who, _ = await rpc_cli(node, "identify")
    assert status == 0 and who["pid"] == node.pid
    status, functions, _ = await rpc_cli(node, "functions")
    assert status == 0 and "echo" in functions["functions"]
    status, listing, _ = await rpc_cli(node, "list", "--json")
    assert status == 0 and isinstance(listing["functions"], list)


async def test_list_shows_a_table(node: LocalNode) -> None:
    running = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "--node", node.address,
        "start", "sleep", '{"seconds": 3}', stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(running.wait(), 30) == 3
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "--node", node.address, "list",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    lines = out.decode().splitlines()
    assert lines[0].split() == ["FNC_ID", "FUNCTION", "STATE", "ELAPSED", "PID", "CPU", "RSS"]
    first = lines[1].split()
    assert first[1:3] == ["sleep", "running"] and first[6].endswith("M")
    count = int(lines[-1].split()[0])
    assert lines[-1] == f"{count} call{'' if count == 1 else 's'}"  # '1 call', not '1 calls'


async def test_list_shows_how_each_call_ended(node: LocalNode) -> None:
    """ok, failed with its error type, aborted: in the table and in --json."""
    _, done, _ = await rpc_cli(node, "call", "echo", '{"value": 1}')
    _, failed, _ = await rpc_cli(node, "call", "fail", '{"message": "boom"}')
    _, running, _ = await rpc_cli(node, "start", "sleep", '{"seconds": 30}')
    _, aborted, _ = await rpc_cli(node, "abort", running["fnc_id"])
    status, listing, _ = await rpc_cli(node, "list", "--json")
    assert status == 0
    listed = {call["fnc_id"]: call for call in listing["functions"]}
    assert listed[done["fnc_id"]]["outcome"] == "ok"
    assert (listed[failed["fnc_id"]]["outcome"], listed[failed["fnc_id"]]["error_type"]) == (
        "failed", "RuntimeError")  # fmt: skip
    assert listed[aborted["fnc_id"]]["outcome"] == "aborted"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "--node", node.address, "list",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    states = {line.split()[0]: line.split()[2] for line in out.decode().splitlines()[1:-1]}
    assert states[done["fnc_id"]] == "ok"
    assert states[failed["fnc_id"]] == "failed:RuntimeError"
    assert states[aborted["fnc_id"]] == "aborted"


def test_node_addresses() -> None:
    assert parse_node("10.0.0.1") == ("10.0.0.1", 1811)
    assert parse_node("node1:2000") == ("node1", 2000)
    assert parse_node("[::1]:2000") == ("::1", 2000)
    assert parse_node("[::1]") == ("::1", 1811)
    assert parse_node("::1") == ("::1", 1811)
