"""Function failures: each gives the contract's error, and the daemon goes on."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from tests.helpers import error_of, lasting_zombies, run_node

pytestmark = pytest.mark.both_spawners


@pytest.fixture
def node(shared_node: LocalNode) -> LocalNode:
    return shared_node


async def test_a_raised_exception_gives_its_type_message_and_traceback(
    client: NodeClient,
) -> None:
    state = await client.start_function("fail", {"message": "disk on fire"}, timeout=10)
    assert state.finished and state.result is None
    error = error_of(state)
    assert error["type"] == "RuntimeError"
    assert error["message"] == "disk on fire"
    assert "tests/functions.py" in error["traceback"]
    assert "noded/process/child/runner.py" not in error["traceback"]
    assert error["traceback"].rstrip().endswith("RuntimeError: disk on fire")


async def test_exit_without_a_result_is_function_process_died(client: NodeClient) -> None:
    state = await client.start_function("exit_now", {"code": 3}, timeout=10)
    error = error_of(state)
    assert error["type"] == "FunctionProcessDied"
    assert error["exit_code"] == 3
    assert "status 3" in error["message"]
    assert "exiting with 3" in error["stderr"]


async def test_death_by_signal_is_function_process_died_with_the_signal(
    client: NodeClient,
) -> None:
    state = await client.start_function("kill_self", {"sig": int(signal.SIGKILL)}, timeout=10)
    assert error_of(state)["type"] == "FunctionProcessDied"
    assert error_of(state)["signal"] == signal.SIGKILL
    assert "SIGKILL" in error_of(state)["message"]


async def test_junk_on_stdout_is_invalid_result(client: NodeClient) -> None:
    state = await client.start_function("write_frame", {"data": "garbage\n"}, timeout=10)
    assert error_of(state)["type"] == "InvalidResult"
    assert "garbage" in error_of(state)["message"]


async def test_json_that_is_not_a_frame_is_invalid_result(client: NodeClient) -> None:
    for data in ('{"result": 1}\n', "[1, 2]\n", '{"ok": false, "error": "text"}\n'):
        state = await client.start_function("write_frame", {"data": data}, timeout=10)
        assert error_of(state)["type"] == "InvalidResult", data


async def test_a_truncated_frame_is_invalid_result(client: NodeClient) -> None:
    state = await client.start_function("write_frame", {"data": '{"ok": true, "res'}, timeout=10)
    assert error_of(state)["type"] == "InvalidResult"
    assert error_of(state)["exit_code"] == 0


async def test_a_non_json_return_value_is_reported_as_the_functions_error(
    client: NodeClient,
) -> None:
    state = await client.start_function("unserialisable", timeout=10)
    assert error_of(state)["type"] == "TypeError"
    assert error_of(state)["message"] == (
        "unserialisable() returned a value JSON cannot carry: Type is not JSON serializable: set"
    )
    assert "frames.py" not in error_of(state)["traceback"]  # noded's code is not the caller's


async def test_a_function_that_closes_the_result_channel_is_told_so_in_its_stderr(
    client: NodeClient,
) -> None:
    state = await client.start_function("closes_the_result_channel", timeout=10)
    assert error_of(state)["type"] == "FunctionProcessDied" and error_of(state)["exit_code"] == 70
    assert "the result could not be written to fd 3" in error_of(state)["stderr"]


async def test_prints_go_to_stderr_never_into_the_frame(client: NodeClient) -> None:
    state = await client.start_function("noisy", {"value": {"clean": True}}, timeout=10)
    assert state.error is None
    assert state.result == {"clean": True}


async def test_the_stderr_tail_is_bounded_and_keeps_the_end() -> None:
    async with run_node(["--stderr-tail-bytes", "1000"]) as node, node.client() as client:
        state = await client.start_function(
            "stderr_then_exit", {"size": 300_000, "code": 1}, timeout=10
        )
    stderr = error_of(state)["stderr"]
    assert len(stderr) == 1000
    assert stderr.endswith("END")


async def test_a_result_is_taken_at_its_newline_while_a_grandchild_holds_stdout(
    client: NodeClient,
) -> None:
    began = time.monotonic()
    state = await client.start_function("leave_stdout_open", timeout=10)
    assert state.finished and state.result == "done"
    assert time.monotonic() - began < 2.5  # the grandchild keeps stdout open for 3 s


async def test_the_daemon_keeps_serving_after_every_kind_of_failure(
    node: LocalNode, client: NodeClient
) -> None:
    failures: list[tuple[str, dict[str, Any]]] = [
        ("fail", {"message": "x"}),
        ("exit_now", {"code": 1}),
        ("kill_self", {"sig": int(signal.SIGSEGV)}),
        ("write_frame", {"data": "junk"}),
    ]
    for fn, args in failures:
        state = await client.start_function(fn, args, timeout=10)
        assert state.finished and state.error is not None
    assert (await client.identify())["pid"] == node.pid
    assert (await client.start_function("add", {"a": 1, "b": 1}, timeout=10)).result == 2
    assert await lasting_zombies(node.pid) == []
