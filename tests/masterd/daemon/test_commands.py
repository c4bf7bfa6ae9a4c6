"""CallMaster and master commands (``--commands``) against a real ganeti-masterd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.masterd.daemon.running import Masterd, registration, run_masterd, spawn


@pytest.fixture
async def masterd(tmp_path: Path) -> AsyncIterator[Masterd]:
    args = ["--commands", "tests.commands", "--command-threads", "2"]
    async with run_masterd(args, workdir=tmp_path / "m") as daemon:
        yield daemon


@pytest.fixture
async def node_uuid(masterd: Masterd) -> str:
    body = registration("n1")
    await masterd.ok("Register", body)
    return str(body["uuid"])


def call(uuid: str, command: str, args: Any = None, timeout: float = 10.0) -> dict[str, Any]:
    return {"uuid": uuid, "command": command, "args": args or {}, "timeout": timeout}


async def error_of(masterd: Masterd, body: Any) -> tuple[int, str, str]:
    status, answer, _ = await masterd.put("CallMaster", body)
    return status, answer["error"]["type"], answer["error"]["message"]


async def test_a_command_gets_the_calling_nodes_name(masterd: Masterd, node_uuid: str) -> None:
    answer = await masterd.ok("CallMaster", call(node_uuid, "allocate_slot", {"disk": "sdb"}))
    assert answer == {"result": {"node": "n1", "disk": "sdb", "size_gb": 10}, "error": None}
    assert (await masterd.ok("CallMaster", call(node_uuid, "add", {"a": 2, "b": 3})))["result"] == 5
    assert (await masterd.ok("CallMaster", call(node_uuid, "renamed")))["result"] == "renamed"
    answer = await masterd.ok("CallMaster", call(node_uuid, "async_echo", {"value": [1, None]}))
    assert answer == {"result": [1, None], "error": None}


async def test_node_in_args_is_invalid_and_bad_arguments_say_why(
    masterd: Masterd, node_uuid: str
) -> None:
    body = call(node_uuid, "allocate_slot", {"disk": "sdb", "node": "n2"})
    status, kind, message = await error_of(masterd, body)
    assert (status, kind) == (400, "InvalidArguments") and "'node'" in message
    # a command that does not declare node is not given it: an unknown argument
    status, kind, message = await error_of(masterd, call(node_uuid, "add", {"a": 1, "node": "x"}))
    assert (status, kind) == (400, "InvalidArguments") and "node" in message
    status, kind, message = await error_of(masterd, call(node_uuid, "add", {"a": "one"}))
    assert (status, kind) == (400, "InvalidArguments") and "'a' must be integer" in message
    status, kind, message = await error_of(masterd, call(node_uuid, "allocate_slot"))
    assert (status, kind) == (400, "InvalidArguments") and "missing arguments: disk" in message


async def test_an_unknown_command_and_an_unknown_node(masterd: Masterd, node_uuid: str) -> None:
    status, kind, message = await error_of(masterd, call(node_uuid, "nope"))
    assert (status, kind) == (404, "UnknownCommand") and "allocate_slot" in message
    status, kind, _ = await error_of(masterd, call("not-registered", "add", {"a": 1}))
    assert (status, kind) == (409, "NotRegistered")


@pytest.mark.parametrize(("command", "kind"), [("fails", "ValueError"),
                                              ("fails_async", "KeyError")])  # fmt: skip
async def test_a_command_that_raised_is_an_answer_with_its_error(
    masterd: Masterd, node_uuid: str, command: str, kind: str
) -> None:
    answer = await masterd.ok("CallMaster", call(node_uuid, command, {"message": "no slot"}))
    assert answer["result"] is None
    error = answer["error"]
    assert error["type"] == kind and "no slot" in error["message"]
    assert f"in {command}" in error["traceback"] and kind in error["traceback"]


async def test_a_result_json_cannot_carry_is_an_error(masterd: Masterd, node_uuid: str) -> None:
    answer = await masterd.ok("CallMaster", call(node_uuid, "no_json"))
    assert answer["error"]["type"] == "TypeError" and "JSON" in answer["error"]["message"]


async def test_plain_commands_run_in_threads_async_ones_on_the_loop(
    masterd: Masterd, node_uuid: str
) -> None:
    plain = await masterd.ok("CallMaster", call(node_uuid, "thread_name"))
    assert plain["result"].startswith("command-thread_name")
    on_loop = await masterd.ok("CallMaster", call(node_uuid, "thread_name_async"))
    assert on_loop["result"] == "MainThread"


@pytest.mark.parametrize("command", ["slow", "slow_async"])
async def test_a_command_past_its_timeout_is_command_timeout(
    masterd: Masterd, node_uuid: str, command: str
) -> None:
    started = time.monotonic()
    status, kind, message = await error_of(
        masterd, call(node_uuid, command, {"seconds": 3}, timeout=0.2)
    )
    assert (status, kind) == (504, "CommandTimeout") and "0.2 s" in message
    assert time.monotonic() - started < 2.5
    answer = await masterd.ok("CallMaster", call(node_uuid, "add", {"a": 1}))
    assert answer["result"] == 1  # still serving
    _, metrics = await masterd.get("/metrics")
    assert f'masterd_commands_total{{command="{command}",outcome="timeout"}} 1.0' in metrics


async def test_plain_commands_share_a_bounded_set_of_threads(
    masterd: Masterd, node_uuid: str
) -> None:
    # --command-threads 2: two slow ones hold both, a third waits past its timeout
    holders = [
        asyncio.create_task(masterd.ok("CallMaster", call(node_uuid, "slow", {"seconds": 3})))
        for _ in range(2)
    ]
    await asyncio.sleep(1.0)  # both running (generous: a loaded machine)
    status, kind, _ = await error_of(masterd, call(node_uuid, "add", {"a": 1}, timeout=0.3))
    assert (status, kind) == (504, "CommandTimeout")
    on_loop = await masterd.ok("CallMaster", call(node_uuid, "async_echo", {"value": 1}))
    assert on_loop["result"] == 1  # async commands need no thread
    assert [(await h)["result"] for h in holders] == [3, 3]
    assert (await masterd.ok("CallMaster", call(node_uuid, "add", {"a": 1})))["result"] == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"command": "add", "args": {}, "timeout": 1}, "'uuid'"),
        ({"uuid": "u", "args": {}, "timeout": 1}, "'command'"),
        ({"uuid": "u", "command": "add", "args": [1], "timeout": 1}, "'args'"),
        ({"uuid": "u", "command": "add", "args": {}}, "'timeout'"),
        ({"uuid": "u", "command": "add", "args": {}, "timeout": -1}, "'timeout'"),
    ],
)
async def test_malformed_call_master_bodies_are_bad_requests(
    masterd: Masterd, body: dict[str, Any], words: str
) -> None:
    status, kind, message = await error_of(masterd, body)
    assert (status, kind) == (400, "BadRequest") and words in message


async def test_a_commands_module_that_cannot_be_imported_stops_the_start(
    tmp_path: Path,
) -> None:
    daemon = spawn(["--commands", "tests.no_such_module"], tmp_path / "m", 1)
    assert await daemon.wait_exit(20.0) == 1
    log = daemon.log_text()
    assert "cannot start" in log and "tests.no_such_module" in log
    assert "--commands-path DIR" in log and "daemon.stopped" not in log


async def test_openapi_lists_call_master(masterd: Masterd) -> None:
    status, text = await masterd.get("/openapi.json")
    assert status == 200 and '"/CallMaster"' in text
