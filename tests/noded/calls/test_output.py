"""A call's output and progress, live over WaitForFunction's output_from (protocol 1.1)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from rpc_client.protocol import CallState
from tests.helpers import eventually, put, run_node

MiB = 1 << 20


async def read_all(client: NodeClient, fnc_id: str, position: int = 0) -> list[dict[str, Any]]:
    """Every event the node keeps from ``position`` on (the call has finished)."""
    events: list[dict[str, Any]] = []
    while True:
        state = await client.wait_for_function(fnc_id, timeout=0, output_from=position)
        assert state.output is not None
        events += state.output["events"]
        if state.output["next"] == state.output_next:
            return events
        position = state.output["next"]


def text_of(events: list[dict[str, Any]], stream: str) -> str:
    return "".join(event["text"] for event in events if event["stream"] == stream)


def output_dir(node: LocalNode) -> Path:
    return node.state_dir / "output"


@pytest.mark.both_spawners  # the pipes differ: the fork server's and exec's
async def test_output_is_followed_live_while_the_call_runs(client: NodeClient) -> None:
    began = time.monotonic()
    state = await client.start_function("print_lines", {"count": 5, "delay_s": 0.4}, timeout=0)
    first = await client.wait_for_function(state.fnc_id, timeout=10, output_from=0)
    assert time.monotonic() - began < 1.5  # the call takes 2 s: this came at its first line
    assert not first.finished and first.output is not None
    assert first.output["events"][0] == {"stream": "stdout", "text": "line 0\n"}
    assert first.output["from"] == 0 and first.output["next"] == first.output_next > 0
    seen = first.output["events"]
    position, done = first.output["next"], first
    while not (done.finished and position == done.output_next):
        done = await client.wait_for_function(state.fnc_id, timeout=10, output_from=position)
        assert done.output is not None and done.output["from"] == position
        seen += done.output["events"]
        position = done.output["next"]
    assert text_of(seen, "stdout") == "".join(f"line {n}\n" for n in range(5))
    again = await client.wait_for_function(state.fnc_id, timeout=5, output_from=position)
    assert again.output == {"from": position, "next": position, "skipped": 0, "events": []}


@pytest.mark.both_spawners  # the pipes differ: the fork server's and exec's
async def test_stderr_is_output_too_and_a_failed_call_keeps_it(client: NodeClient) -> None:
    state = await client.start_function("print_then_fail", {"text": "about to fail"}, timeout=10)
    assert state.finished and state.error is not None
    assert state.error["type"] == "RuntimeError"
    events = await read_all(client, state.fnc_id)
    assert text_of(events, "stdout") == "about to fail\n"
    assert text_of(events, "stderr").startswith("about to fail\n")


async def test_progress_arrives_as_events_in_the_state_and_in_the_listing(
    client: NodeClient,
) -> None:
    began = time.monotonic()
    state = await client.start_function("report_progress", {"count": 10_000}, timeout=30)
    assert state.result == 10_000
    assert time.monotonic() - began < 10  # 10,000 reports did not slow the function much
    assert state.progress is not None
    assert (state.progress["fraction"], state.progress["message"]) == (1.0, "10000 of 10000")
    events = [e for e in await read_all(client, state.fnc_id) if e["stream"] == "progress"]
    assert events[-1] == {"stream": "progress", "fraction": 1.0, "text": "10000 of 10000"}
    assert len(events) < 1000  # coalesced on the function's side
    listed = {c["fnc_id"]: c for c in await client.list_functions()}[state.fnc_id]
    assert listed["progress"] == state.progress


async def test_a_call_that_prints_nothing_has_no_output_and_no_file(
    node: LocalNode, client: NodeClient
) -> None:
    state = await client.start_function("echo", {"value": 1}, timeout=10)
    assert (state.progress, state.output_next) == (None, 0)
    waited = await client.wait_for_function(state.fnc_id, timeout=1, output_from=0)
    assert waited.output == {"from": 0, "next": 0, "skipped": 0, "events": []}
    assert not output_dir(node).exists() or not any(output_dir(node).iterdir())


async def test_a_flood_stays_within_the_limit_with_the_rest_counted(
    node: LocalNode, client: NodeClient
) -> None:
    rss_before = psutil.Process(node.pid).memory_info().rss
    flooding = asyncio.create_task(client.start_function("flood", {"megabytes": 40}, timeout=60))
    began = time.monotonic()
    quick = await client.start_function("echo", {"value": "still served"}, timeout=10)
    assert quick.result == "still served" and time.monotonic() - began < 5
    state = await flooding
    assert state.result == 40 * MiB
    on_disk = sum(path.stat().st_size for path in output_dir(node).iterdir())
    assert 0 < on_disk <= MiB  # --max-output-bytes, the default
    page = (await client.wait_for_function(state.fnc_id, timeout=0, output_from=0)).output
    assert page is not None and page["skipped"] == page["from"] > 30 * MiB
    kept = len(text_of(await read_all(client, state.fnc_id, page["from"]), "stdout"))
    assert page["skipped"] + kept >= 40 * MiB  # every byte either kept or counted
    assert psutil.Process(node.pid).memory_info().rss - rss_before < 64 * MiB
    metrics = await put_get(node, "/metrics")
    assert "noded_output_bytes_dropped_total" in metrics


async def put_get(node: LocalNode, path: str) -> str:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{node.address}{path}") as response,
    ):
        return await response.text()


async def test_output_limit_at_its_edge(tmp_path: Path) -> None:
    async with run_node(["--max-output-bytes", "8192"]) as node, node.client() as client:
        state = await client.start_function("flood", {"megabytes": 0.25}, timeout=30)
        on_disk = sum(path.stat().st_size for path in output_dir(node).iterdir())
        assert 0 < on_disk <= 8192
        output = (await client.wait_for_function(state.fnc_id, timeout=0, output_from=0)).output
        assert output is not None and output["skipped"] > 0


async def test_a_restarted_daemon_serves_a_retained_calls_output(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        state = await client.start_function("print_lines", {"count": 3}, timeout=10)
        before = await read_all(client, state.fnc_id)
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        after = await client.wait_for_function(state.fnc_id, timeout=1, output_from=0)
        assert after.output_next == state.output_next
        assert await read_all(client, state.fnc_id) == before
        assert text_of(before, "stdout") == "line 0\nline 1\nline 2\n"


async def test_an_expired_calls_output_is_removed(tmp_path: Path) -> None:
    async with run_node(["--result-ttl", "0.5"]) as node, node.client() as client:
        await client.start_function("print_lines", {"count": 3}, timeout=10)
        assert any(output_dir(node).iterdir())
        await eventually(lambda: not any(output_dir(node).iterdir()))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, [0]])
async def test_a_bad_output_from_is_a_bad_request(node: LocalNode, bad: Any) -> None:
    started = await put(node, "/StartFunction", {"fn_name": "echo", "fn_args": {"value": 1},
                                                 "timeout": 5})  # fmt: skip
    fnc_id = started[1]["fnc_id"]
    status, body, _ = await put(
        node, "/WaitForFunction", {"fnc_id": fnc_id, "timeout": 0, "output_from": bad}
    )
    assert (status, body["error"]["type"]) == (400, "BadRequest")
    assert "output_from" in body["error"]["message"]


def test_the_call_state_reads_the_new_fields() -> None:
    wire = {"fnc_id": "1:2:3.000000:0123456789abcdef", "finished": False, "result": None,
            "error": None, "progress": {"fraction": None, "message": "x", "at": 1.0},
            "output_next": 7}  # fmt: skip
    state = CallState.from_wire(wire)
    assert (state.progress, state.output_next, state.output) == (wire["progress"], 7, None)
    old = {"fnc_id": wire["fnc_id"], "finished": True}
    assert CallState.from_wire(old).output_next == 0  # a 1.0 node


@pytest.mark.both_spawners  # the pipes differ: the fork server's and exec's
async def test_programs_the_function_runs_do_not_get_the_frame_channel(
    client: NodeClient,
) -> None:
    state = await client.start_function("child_sees_fd3", timeout=10)
    assert state.error is None and not state.result.startswith("pipe:")


@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_a_printed_line_is_one_write_even_under_pythonunbuffered(spawn: str) -> None:
    """Daemons are often run with PYTHONUNBUFFERED=1 (systemd units set it for their
    logs).  A function process inherits it, and its stdout would then write every piece
    of a print (the text, then the newline) as a write of its own: output events cut
    lines in two.  Its stdout stays line-buffered, as the runner promises."""
    env = {"PYTHONUNBUFFERED": "1"}
    async with run_node(["--spawn", spawn], env=env) as node, node.client() as client:
        state = await client.start_function("stdout_buffering", {}, timeout=10)
    assert state.result == {"line_buffering": True, "write_through": False}
