"""call_master from a function: through the node's daemon to a master, or a typed error."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from masterd.local import LocalNode
from tests.helpers import run_node
from tests.masterd.daemon.running import run_masterd
from tests.noded.master.running import FUNCTIONS, node_with_master, run_call, wait_state

COMMANDS = ["--heartbeat-s", "0.5", "--commands", "tests.commands"]


@contextlib.asynccontextmanager
async def silent_master() -> AsyncIterator[str]:
    """A port that takes connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_without_a_master_it_is_node_unreachable(tmp_path: Path) -> None:
    async with run_node(["--functions", FUNCTIONS], workdir=tmp_path / "n") as node:
        answer = (await run_call(node, "ask_master", {"command": "anything"})).result
    assert answer["raised"] == "NodeUnreachable"
    assert "no master" in answer["message"]


@pytest.mark.slow
async def test_with_no_master_answering_it_is_node_unreachable_in_time(tmp_path: Path) -> None:
    async with (
        silent_master() as silent,
        node_with_master(["127.0.0.1:9", silent], tmp_path / "n") as node,
    ):
        started = time.monotonic()
        answer = (await run_call(node, "ask_master", {"command": "x", "timeout": 1})).result
        took_s = time.monotonic() - started
    assert answer["raised"] == "NodeUnreachable", answer
    assert took_s < 1 + 2 + 5  # the timeout, CallMaster's margin, and a generous bound


async def test_a_master_without_call_master_gives_a_typed_error(tmp_path: Path) -> None:
    async with (
        run_masterd(["--heartbeat-s", "0.5"], workdir=tmp_path / "m") as masterd,
        node_with_master([masterd.address], tmp_path / "n") as node,
    ):
        await wait_state(masterd, "node-a", "alive")
        answer = (await run_call(node, "ask_master", {"command": "allocate_slot"})).result
    # a masterd without that command (or without CallMaster): a 404, raised as its class
    assert answer["raised"] in ("UnknownProcedure", "UnknownCommand"), answer


async def test_a_command_answers_through_the_node(tmp_path: Path) -> None:
    async with (
        run_masterd(COMMANDS, workdir=tmp_path / "m") as masterd,
        node_with_master([masterd.address], tmp_path / "n") as node,
    ):
        await wait_state(masterd, "node-a", "alive")
        answer = await ask(node, "allocate_slot", {"disk": "sdb"})
        assert answer == {"result": {"node": "node-a", "disk": "sdb", "size_gb": 10}}
        failed = await ask(node, "fails", {"message": "no slot"})
        assert failed["raised"] == "FunctionFailed" and failed["type"] == "ValueError"
        assert "no slot" in failed["message"] and "ValueError" in failed["traceback"]
        unknown = await ask(node, "no_such_command", {})
        assert unknown["raised"] == "UnknownCommand", unknown
        bad = await ask(node, "add", {"a": "one"})
        assert bad["raised"] == "InvalidArguments", bad
        late = await ask(node, "slow", {"seconds": 3}, timeout=0.5)
        assert late["raised"] == "CommandTimeout", late


async def ask(
    node: LocalNode, command: str, args: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    fn_args = {"command": command, "args": args, "timeout": timeout}
    return dict((await run_call(node, "ask_master", fn_args)).result)


async def test_a_long_state_directory_relays_on_an_abstract_socket(tmp_path: Path) -> None:
    workdir = tmp_path / ("d" * 100)  # <state-dir>/master.sock is too long for a unix socket
    async with node_with_master(["127.0.0.1:9"], workdir) as node:
        answer = (await run_call(node, "ask_master", {"command": "x", "timeout": 1})).result
    assert answer["raised"] == "NodeUnreachable", answer
    assert "no master answered CallMaster" in answer["message"]  # the daemon's, not a socket's
