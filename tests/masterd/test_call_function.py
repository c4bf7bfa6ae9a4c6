"""masterd.call_function against real daemons and bad nodes: results, failures, deadlines."""

from __future__ import annotations

import asyncio
import time

import pytest

from masterd.call import LATE_S, CallOptions, Deadline, call_function, run_call
from masterd.local import free_port
from rpc_client.client import ClientTimeouts, NodeClient
from rpc_client.errors import CallTimeout, FunctionFailed, NodeTimeout, NodeUnreachable
from rpc_client.protocol import CallState
from tests.fakes import fake_node, never_answers
from tests.helpers import error_of


async def test_returns_the_result(client: NodeClient) -> None:
    assert await call_function(client, "add", {"a": 20, "b": 22}, timeout=10) == 42


async def test_polls_a_long_call_to_completion(client: NodeClient) -> None:
    seen: list[CallState] = []
    state = await run_call(
        client, "sleep", {"seconds": 1}, 20, CallOptions(wait_s=0.2), on_progress=seen.append
    )
    assert state.result == 1
    assert len(seen) >= 3
    assert len({s.fnc_id for s in seen}) == 1


async def test_a_failure_raises_function_failed_with_the_remote_details(
    client: NodeClient,
) -> None:
    with pytest.raises(FunctionFailed) as info:
        await call_function(client, "fail", {"message": "nope"}, timeout=10)
    exc = info.value
    assert exc.type == "RuntimeError"
    assert "nope" in str(exc)
    assert "RuntimeError: nope" in (exc.traceback or "")
    assert exc.fnc_id and exc.node == client.name


async def test_the_deadline_raises_call_timeout_with_the_fnc_id(client: NodeClient) -> None:
    began = time.monotonic()
    with pytest.raises(CallTimeout) as info:
        await call_function(client, "sleep", {"seconds": 30}, 1.0, options=CallOptions(wait_s=10))
    assert time.monotonic() - began < 1.0 + 1.5
    assert info.value.fnc_id
    # the call goes on: the caller may abort it, or wait again
    state = await client.abort_function(info.value.fnc_id)
    assert error_of(state)["type"] == "FunctionAborted"


async def test_a_silent_node_costs_no_more_than_the_deadline() -> None:
    async with fake_node(never_answers) as port, NodeClient("127.0.0.1", port) as node:
        began = time.monotonic()
        with pytest.raises(NodeTimeout):
            await call_function(node, "echo", {"value": 1}, timeout=1.5)
        assert time.monotonic() - began < 1.5 + 1.0  # the promise: timeout + 1 s


@pytest.mark.slow
async def test_a_deadline_of_5_s_or_more_is_kept_to_the_millisecond_too() -> None:
    """aiohttp rounds a timeout of 5 s or more up to a whole second of the loop's clock
    unless told not to; started just past .30 of a second, a 5 s call ended at +5.95 s
    instead of +5.75 (timeout + LATE_S)."""
    loop = asyncio.get_running_loop()
    async with fake_node(never_answers) as port, NodeClient("127.0.0.1", port) as node:
        await asyncio.sleep((0.30 - loop.time() % 1) % 1)  # the worst case for the rounding
        began = time.monotonic()
        with pytest.raises(NodeTimeout):
            await call_function(node, "echo", {"value": 1}, timeout=5.0)
        assert time.monotonic() - began < 5.0 + LATE_S + 0.5


async def test_an_unreachable_node_fails_at_once() -> None:
    async with NodeClient("127.0.0.1", free_port(), timeouts=ClientTimeouts(connect_s=2)) as node:
        began = time.monotonic()
        with pytest.raises(NodeUnreachable):
            await call_function(node, "echo", {"value": 1}, timeout=30)
        assert time.monotonic() - began < 2


def test_deadline_arithmetic() -> None:
    assert Deadline(None).wait_s(10) == 10
    assert Deadline(None).request_timeout_s(10, 5) == 15
    short = Deadline(2)
    assert short.wait_s(10) <= 2
    assert short.request_timeout_s(short.wait_s(10), 5) <= 2 + LATE_S
    assert Deadline(100).request_timeout_s(1, 5) == 6
    with pytest.raises(ValueError):
        Deadline(-1)
