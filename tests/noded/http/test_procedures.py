"""Every procedure against a real daemon over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from rpc_client.errors import RequestIdConflict
from rpc_client.protocol import FNC_ID_RE, FncId
from tests.helpers import lasting_zombies, put, run_node

pytestmark = pytest.mark.both_spawners


@pytest.fixture
def node(shared_node: LocalNode) -> LocalNode:
    """The module's daemon: these tests look only at their own calls (a fresh daemon for
    each took a minute of the suite)."""
    return shared_node


@pytest.fixture
async def own_node(spawn_method: str) -> AsyncIterator[LocalNode]:
    """A daemon of the test's own, for a test that counts what the daemon holds."""
    async with run_node(["--spawn", spawn_method]) as daemon:
        yield daemon


async def test_quick_call_answers_the_contracts_state_object(node: LocalNode) -> None:
    status, body, headers = await put(
        node, "/StartFunction", {"fn_name": "add", "fn_args": {"a": 2, "b": 3}, "timeout": 10}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) >= {"fnc_id", "finished", "result", "error"}
    assert body["finished"] is True
    assert body["result"] == 5
    assert body["error"] is None


async def test_fnc_id_names_the_daemon_the_process_and_the_start_time(
    node: LocalNode, client: NodeClient
) -> None:
    before = time.time()
    state = await client.start_function("whoami", timeout=10)
    assert FNC_ID_RE.fullmatch(state.fnc_id)
    fnc_id = FncId.parse(state.fnc_id)
    assert fnc_id.ppid == node.pid
    assert fnc_id.cpid == state.result["pid"]
    assert before - 1 <= float(fnc_id.time) <= time.time()
    assert len(fnc_id.time.split(".")[1]) == 6


async def test_each_call_is_its_own_process_leading_its_own_session(
    node: LocalNode, client: NodeClient
) -> None:
    states = [await client.start_function("whoami", timeout=10) for _ in range(3)]
    pids = {state.result["pid"] for state in states}
    assert len(pids) == 3
    for state in states:
        who = state.result
        assert who["sid"] == who["pid"] == who["pgid"]
        # the daemon's child (--spawn exec), or its fork server's (--spawn fork)
        parent = who["ppid"]
        assert parent == node.pid or psutil.Process(parent).ppid() == node.pid
        assert who["pid"] != node.pid


async def test_timeout_zero_answers_at_once_and_the_result_is_collected_later(
    client: NodeClient,
) -> None:
    began = time.monotonic()
    state = await client.start_function("sleep", {"seconds": 1.0}, timeout=0)
    assert state.finished is False and state.result is None and state.error is None
    assert time.monotonic() - began < 0.9
    done = await client.wait_for_function(state.fnc_id, timeout=10)
    assert done.finished and done.result == 1.0
    assert done.fnc_id == state.fnc_id


async def test_several_short_waits_on_a_long_call(client: NodeClient) -> None:
    state = await client.start_function("sleep", {"seconds": 1.2}, timeout=0.2)
    rounds = 1
    while not state.finished:
        state = await client.wait_for_function(state.fnc_id, timeout=0.2)
        rounds += 1
        assert rounds < 40
    assert rounds >= 4
    assert state.result == 1.2


async def test_wait_is_woken_by_the_result_not_by_its_timeout(client: NodeClient) -> None:
    state = await client.start_function("sleep", {"seconds": 0.2}, timeout=0)
    began = time.monotonic()
    done = await client.wait_for_function(state.fnc_id, timeout=10)
    assert done.finished
    assert time.monotonic() - began < 3.0  # generous: the point is "not 10 s"


async def test_start_is_woken_by_the_result_too(client: NodeClient) -> None:
    began = time.monotonic()
    state = await client.start_function("sleep", {"seconds": 0.2}, timeout=10)
    assert state.finished
    assert time.monotonic() - began < 3.0


async def test_a_finished_call_is_answered_again_and_again(client: NodeClient) -> None:
    state = await client.start_function("echo", {"value": [1, "two"]}, timeout=10)
    for _ in range(3):
        again = await client.wait_for_function(state.fnc_id, timeout=5)
        assert again.to_wire() == state.to_wire()


async def test_max_wait_caps_a_single_wait() -> None:
    async with run_node(["--max-wait", "0.3"]) as node, node.client() as client:
        began = time.monotonic()
        state = await client.start_function("sleep", {"seconds": 3}, timeout=30)
        assert state.finished is False
        assert time.monotonic() - began < 2.5


async def test_twenty_calls_run_at_the_same_time(node: LocalNode, client: NodeClient) -> None:
    began = time.monotonic()
    states = await asyncio.gather(
        *(
            client.start_function("sleep_then", {"seconds": 1.5, "value": n}, timeout=30)
            for n in range(20)
        )
    )
    assert [state.result for state in states] == list(range(20))
    assert len({state.fnc_id for state in states}) == 20
    # 20 sequential calls would take 30 s; together they take a little over 1.5 s
    assert time.monotonic() - began < 15
    assert await lasting_zombies(node.pid) == []


async def test_async_functions_are_awaited(client: NodeClient) -> None:
    state = await client.start_function("async_echo", {"value": {"k": [1]}}, timeout=10)
    assert state.result == {"k": [1]}


# --- request_id idempotency -------------------------------------------------------------


async def test_same_request_id_runs_the_function_once(client: NodeClient, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = {"path": str(runs), "value": 7}
    first = await client.start_function("count_run", args, timeout=10, request_id="job-1.a:b")
    second = await client.start_function("count_run", args, timeout=10, request_id="job-1.a:b")
    assert first.fnc_id == second.fnc_id
    assert second.result == 7
    assert runs.read_text() == "run\n"


async def test_same_request_id_while_running_joins_the_running_call(
    client: NodeClient,
) -> None:
    args = {"seconds": 0.5, "value": "x"}
    first = await client.start_function("sleep_then", args, timeout=0, request_id="r-running")
    second = await client.start_function("sleep_then", args, timeout=10, request_id="r-running")
    assert second.fnc_id == first.fnc_id
    assert second.finished and second.result == "x"


async def test_same_request_id_with_other_arguments_is_a_conflict(client: NodeClient) -> None:
    await client.start_function("echo", {"value": 1}, timeout=10, request_id="r-conflict")
    with pytest.raises(RequestIdConflict):
        await client.start_function("echo", {"value": 2}, timeout=10, request_id="r-conflict")
    with pytest.raises(RequestIdConflict):
        await client.start_function("add", {"a": 1, "b": 1}, timeout=10, request_id="r-conflict")


async def test_argument_order_does_not_make_a_conflict(client: NodeClient) -> None:
    one = await client.start_function("add", {"a": 1, "b": 2}, timeout=10, request_id="r-order")
    two = await client.start_function("add", {"b": 2, "a": 1}, timeout=10, request_id="r-order")
    assert one.fnc_id == two.fnc_id


# --- ListFunctions, Identify, DescribeFunctions --------------------------------------


async def test_list_functions_shows_running_and_retained_calls(client: NodeClient) -> None:
    done = await client.start_function("echo", {"value": 1}, timeout=10)
    running = await client.start_function("sleep", {"seconds": 2}, timeout=0)
    listing = {entry["fnc_id"]: entry for entry in await client.list_functions()}
    fields = {"fnc_id", "fn_name", "finished", "started", "elapsed_s", "pid", "cpu_s", "rss_bytes"}
    assert set(listing[done.fnc_id]) >= fields
    assert listing[done.fnc_id]["finished"] is True
    assert listing[done.fnc_id]["fn_name"] == "echo"
    entry = listing[running.fnc_id]
    assert entry["finished"] is False
    assert entry["pid"] == FncId.parse(running.fnc_id).cpid
    assert entry["cpu_s"] >= 0
    assert entry["elapsed_s"] >= 0
    # An exec'd interpreter may still be starting when the first listing is taken (0.8 MB
    # was seen): its RSS is that of a started interpreter once it has got going.
    assert await _listed_rss(client, running.fnc_id) > 1_000_000
    await client.wait_for_function(running.fnc_id, timeout=10)


async def test_list_functions_tells_how_each_call_ended(client: NodeClient) -> None:
    done = await client.start_function("echo", {"value": 1}, timeout=10)
    failed = await client.start_function("fail", {"message": "boom"}, timeout=10)
    running = await client.start_function("sleep", {"seconds": 30}, timeout=0)
    listing = {entry["fnc_id"]: entry for entry in await client.list_functions()}
    assert listing[running.fnc_id]["outcome"] == "running"
    assert listing[running.fnc_id]["error_type"] is None
    aborted = await client.abort_function(running.fnc_id)
    listing = {entry["fnc_id"]: entry for entry in await client.list_functions()}
    assert (listing[done.fnc_id]["outcome"], listing[done.fnc_id]["error_type"]) == ("ok", None)
    assert listing[failed.fnc_id]["outcome"] == "failed"
    assert listing[failed.fnc_id]["error_type"] == "RuntimeError"
    assert listing[aborted.fnc_id]["outcome"] == "aborted"
    assert listing[aborted.fnc_id]["error_type"] == "FunctionAborted"


async def _listed_rss(client: NodeClient, fnc_id: str, floor: int = 1_000_000) -> int:
    """The RSS ListFunctions gives a running call, once above floor or after 1.5 s."""
    deadline = time.monotonic() + 1.5
    while True:
        listing = {entry["fnc_id"]: entry for entry in await client.list_functions()}
        rss = int(listing[fnc_id]["rss_bytes"])
        if rss > floor or time.monotonic() > deadline:
            return rss
        await asyncio.sleep(0.05)


async def test_identify(node: LocalNode, client: NodeClient) -> None:
    who = await client.identify()
    assert set(who) >= {"name", "uuid", "pid", "version", "started", "boot_id"}
    assert who["pid"] == node.pid
    assert who["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert abs(who["started"] - time.time()) < 120


async def test_the_uuid_is_kept_across_restarts(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        uuid = (await client.identify())["uuid"]
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        who = await client.identify()
    assert who["uuid"] == uuid
    assert who["pid"] != first.pid


async def test_describe_functions_gives_docs_and_schemas(client: NodeClient) -> None:
    functions = await client.describe_functions()
    assert {"echo", "sleep", "node_info", "add"} <= set(functions)
    assert functions["sleep"]["doc"]
    assert functions["sleep"]["params"] == {
        "type": "object",
        "properties": {"seconds": {"type": "number"}},
        "required": ["seconds"],
        "additionalProperties": False,
    }
    assert functions["add"]["params"]["properties"]["a"] == {"type": "integer"}


async def test_node_info_builtin(client: NodeClient) -> None:
    info = (await client.start_function("node_info", timeout=10)).result
    assert info["cpu_count"] == os.cpu_count()
    assert info["memory"]["total_bytes"] > 0
    assert len(info["load_avg"]) == 3
    assert isinstance(info["disks"], list)


async def test_no_descriptor_is_leaked_by_calls(own_node: LocalNode) -> None:
    async with own_node.client() as client:
        await _no_descriptor_is_leaked(own_node, client)


async def _no_descriptor_is_leaked(node: LocalNode, client: NodeClient) -> None:
    def links(pid: int) -> list[str]:
        fd_dir = f"/proc/{pid}/fd"
        found = []
        for name in os.listdir(fd_dir):
            with contextlib.suppress(FileNotFoundError):
                found.append(os.readlink(f"{fd_dir}/{name}"))
        return found

    async def settled_fds() -> int:
        # once no call runs and the spare pool is full again, the count stops changing
        end = time.monotonic() + 10
        last = -1
        while time.monotonic() < end:
            count = len(links(node.pid))
            if count == last and not [
                c for c in await client.list_functions() if not c["finished"]
            ]:
                return count
            last = count
            await asyncio.sleep(0.3)
        raise AssertionError("the daemon's descriptors did not settle")

    await client.start_function("echo", {"value": 0}, timeout=10)  # warm up the connection
    before = await settled_fds()
    for n in range(10):
        await client.start_function("echo", {"value": n}, timeout=10)
        await client.start_function("exit_now", {"code": 1}, timeout=10)
        await client.start_function("write_frame", {"data": "junk"}, timeout=10)
    running = await client.start_function("sleep", {"seconds": 5}, timeout=0)
    await asyncio.sleep(0.2)
    held = links(node.pid)
    stderr_pipe = os.readlink(f"/proc/{FncId.parse(running.fnc_id).cpid}/fd/2")
    assert stderr_pipe.startswith("pipe:") and stderr_pipe in held  # the daemon reads it
    assert "anon_inode:[pidfd]" in held
    await client.abort_function(running.fnc_id)
    assert await settled_fds() == before
