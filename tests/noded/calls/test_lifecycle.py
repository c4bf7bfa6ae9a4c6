"""Retention, abort, abort_after and the result-size limit, each at its edge."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil
import pytest

from rpc_client.client import NodeClient
from rpc_client.errors import UnknownFunctionCall
from rpc_client.protocol import FncId
from tests.helpers import error_of, run_node, start_with_grandchildren, still_alive

pytestmark = pytest.mark.both_spawners

# --- retention -----------------------------------------------------------------------


async def test_results_expire_after_the_ttl() -> None:
    async with run_node(["--result-ttl", "0.5"]) as node, node.client() as client:
        state = await client.start_function("echo", {"value": 1}, timeout=10)
        assert (await client.wait_for_function(state.fnc_id, timeout=1)).result == 1
        end = time.monotonic() + 10
        with pytest.raises(UnknownFunctionCall, match="expired"):
            while time.monotonic() < end:
                await client.wait_for_function(state.fnc_id, timeout=0)
                await asyncio.sleep(0.1)
        assert not any(e["fnc_id"] == state.fnc_id for e in await client.list_functions())


async def test_at_most_max_retained_results_are_kept_oldest_dropped_first() -> None:
    async with run_node(["--max-retained", "2"]) as node, node.client() as client:
        states = [await client.start_function("echo", {"value": n}, timeout=10) for n in range(3)]
        with pytest.raises(UnknownFunctionCall, match="over the limit of 2"):
            await client.wait_for_function(states[0].fnc_id, timeout=0)
        for state in states[1:]:
            assert (await client.wait_for_function(state.fnc_id, timeout=0)).finished
        assert len(await client.list_functions()) == 2


async def test_a_dropped_request_id_starts_a_new_call() -> None:
    async with run_node(["--max-retained", "1"]) as node, node.client() as client:
        first = await client.start_function("echo", {"value": 1}, timeout=10, request_id="r1")
        await client.start_function("echo", {"value": 2}, timeout=10)
        again = await client.start_function("echo", {"value": 1}, timeout=10, request_id="r1")
        assert again.fnc_id != first.fnc_id


# --- abort and abort_after -------------------------------------------------------------


async def test_abort_kills_the_group_and_answers_function_aborted(
    client: NodeClient, tmp_path: Path
) -> None:
    fnc_id, kids = await start_with_grandchildren(client, tmp_path)
    state = await client.abort_function(fnc_id)
    assert state.finished
    assert error_of(state)["type"] == "FunctionAborted"
    assert error_of(state)["reason"] == "aborted"
    assert await still_alive([FncId.parse(fnc_id).cpid, *kids]) == []


async def test_abort_of_a_finished_call_answers_its_state_unchanged(client: NodeClient) -> None:
    state = await client.start_function("echo", {"value": 5}, timeout=10)
    assert (await client.abort_function(state.fnc_id)).to_wire() == state.to_wire()


async def test_abort_sigkills_what_ignores_sigterm_after_the_kill_grace(tmp_path: Path) -> None:
    async with run_node(["--kill-grace", "0.5"]) as node, node.client() as client:
        fnc_id, kids = await start_with_grandchildren(client, tmp_path, ignore_term=True)
        began = time.monotonic()
        state = await client.abort_function(fnc_id)
        assert 0.4 <= time.monotonic() - began < 8
        assert error_of(state)["type"] == "FunctionAborted"
        assert await still_alive([FncId.parse(fnc_id).cpid, *kids]) == []


async def test_abort_after_kills_a_call_that_runs_too_long(client: NodeClient) -> None:
    began = time.monotonic()
    state = await client.start_function("sleep", {"seconds": 30}, timeout=20, abort_after=0.5)
    assert state.finished
    assert error_of(state)["type"] == "FunctionAborted"
    assert error_of(state)["reason"] == "abort_after"
    assert time.monotonic() - began < 10


async def test_abort_after_does_not_touch_a_call_that_finishes_in_time(
    client: NodeClient,
) -> None:
    state = await client.start_function("sleep", {"seconds": 0.1}, timeout=10, abort_after=5)
    assert state.result == 0.1


# --- result size ------------------------------------------------------------------


async def test_the_result_size_limit_at_its_edge() -> None:
    limit = 10_000
    frame_overhead = len(b'{"ok":true,"result":""}')
    async with run_node(["--max-result-bytes", str(limit)]) as node, node.client() as client:
        exact = await client.start_function("big", {"size": limit - frame_overhead}, timeout=10)
        assert exact.error is None and len(exact.result) == limit - frame_overhead
        over = await client.start_function("big", {"size": limit - frame_overhead + 1}, timeout=10)
        assert error_of(over)["type"] == "ResultTooLarge"
        assert error_of(over)["limit_bytes"] == limit
        assert (await client.identify())["pid"] == node.pid


async def test_a_200_mib_result_is_refused_with_the_daemons_memory_bounded() -> None:
    limit = 64 * 1024 * 1024  # the default
    async with run_node() as node, node.client() as client:
        daemon = psutil.Process(node.pid)
        baseline = daemon.memory_info().rss
        peak = baseline
        call = asyncio.create_task(
            client.start_function("big", {"size": 200 * 1024 * 1024}, timeout=60)
        )
        while not call.done():
            peak = max(peak, daemon.memory_info().rss)
            await asyncio.sleep(0.005)
        state = call.result()
        assert error_of(state)["type"] == "ResultTooLarge"
        assert error_of(state)["limit_bytes"] == limit
        assert (await client.identify())["pid"] == node.pid
    # the daemon held at most the limit (plus its read chunk), never the 200 MiB
    assert peak - baseline < limit + 16 * 1024 * 1024, (peak - baseline) / 2**20
