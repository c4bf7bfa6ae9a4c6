"""Out of descriptors: under RLIMIT_NOFILE 256, every one of 200 concurrent StartFunction
requests, each on a connection of its own, is answered 200 or 503 Busy with Retry-After;
none is reset or left unanswered."""

from __future__ import annotations

import asyncio
import collections
import errno
import shutil
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest

from masterd.local import LocalNode, free_port
from noded.metrics import Metrics
from rpc_client.errors import NodeBusy
from rpc_client.serving.descriptors import CALL_DESCRIPTORS, DescriptorBudget
from rpc_client.serving.listener import listeners_for
from tests.helpers import classify_raw_answer, node_args, node_env

#: the daemon's descriptor limit, soft and hard
NOFILE = 256
CONCURRENT = 200


async def start_once(port: int, body: bytes, timeout_s: float = 60.0) -> str:
    """One StartFunction on a connection of its own: ``200``, ``503 Busy`` (with
    Retry-After), another status, or how the connection failed."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(
                    b"PUT /StartFunction HTTP/1.1\r\nHost: node\r\nConnection: close\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                answer = await reader.read()
            finally:
                writer.close()
    except TimeoutError:
        return "no answer in time"
    except OSError as exc:
        return f"connection error: {type(exc).__name__}"
    return classify_raw_answer(answer)


async def start_after(delay_s: float, port: int, body: bytes) -> str:
    await asyncio.sleep(delay_s)
    return await start_once(port, body)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit(1)")
async def test_out_of_descriptors_every_start_is_answered(tmp_path: Path) -> None:
    prefix = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    async with LocalNode.running(
        node_args(), env=node_env(), workdir=tmp_path, prefix=prefix
    ) as node:
        body = orjson.dumps({"fn_name": "sleep_then", "fn_args": {"seconds": 1}, "timeout": 30})
        # over a second, so that calls hold descriptors while connections keep coming:
        # accept then fails for want of one (all at once, the connections alone fit)
        outcomes = await asyncio.gather(
            *(start_after(i * 0.005, node.port, body) for i in range(CONCURRENT))
        )
        counted = collections.Counter(outcomes)
        assert set(counted) <= {"200", "503 Busy with Retry-After"}, counted
        assert counted["200"] >= 1 and counted["503 Busy with Retry-After"] >= 1, counted
        assert "limit.descriptors" in node.log_text()
        # and the daemon serves on, as before
        async with node.client() as client:
            assert (await client.start_function("echo", {"value": 1}, timeout=10)).result == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit(1)")
async def test_when_accept_finds_no_descriptor_the_reserve_answers(tmp_path: Path) -> None:
    """With the smallest reserve, the budget lets descriptors run out, and accept fails
    with EMFILE: the connections are answered on the reserve descriptor, one by one."""
    prefix = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    async with LocalNode.running(
        node_args(["--descriptor-reserve", "1"]), env=node_env(), workdir=tmp_path, prefix=prefix
    ) as node:
        body = orjson.dumps({"fn_name": "sleep_then", "fn_args": {"seconds": 1}, "timeout": 30})
        outcomes = await asyncio.gather(*(start_once(node.port, body) for _ in range(2 * NOFILE)))
        counted = collections.Counter(outcomes)
        assert set(counted) <= {"200", "503 Busy with Retry-After"}, counted
        assert "http.accept_failed" in node.log_text()


def budget_of(open_now: int, *, limit: int = 140, table: int = 1024) -> DescriptorBudget:
    return DescriptorBudget(32, Metrics(), limit=limit, count=lambda: open_now, bound=lambda: table)


def test_a_call_is_admitted_only_while_it_leaves_the_reserve_free() -> None:
    budget_of(140 - CALL_DESCRIPTORS - 32).admit_call()  # exactly the reserve left
    with pytest.raises(NodeBusy, match="--descriptor-reserve") as busy:
        budget_of(140 - CALL_DESCRIPTORS - 32 + 1).admit_call()
    assert busy.value.retry_after_s == 1


def test_a_connection_is_taken_in_while_a_quarter_of_the_reserve_remains() -> None:
    assert budget_of(140 - 1 - 8).admit_connection()
    assert not budget_of(140 - 1 - 8 + 1).admit_connection()


def test_far_from_the_limit_nothing_is_counted() -> None:
    def count() -> int:
        raise AssertionError("counted although the table size showed room enough")

    budget = DescriptorBudget(32, Metrics(), limit=65536, count=count, bound=lambda: 256)
    for _ in range(1000):
        budget.admit_call()
        assert budget.admit_connection()


def test_with_no_descriptor_left_to_look_nothing_is_admitted() -> None:
    def count() -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    assert not DescriptorBudget(32, Metrics(), limit=256, count=count, bound=lambda: 256).admit(
        1, 1
    )


async def test_a_name_is_listened_on_at_each_of_its_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As loop.create_server does: ``localhost`` may be 127.0.0.1 and ::1."""
    port = free_port()
    both = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
    ]

    async def getaddrinfo(*args: object, **kwargs: object) -> list[Any]:
        return both

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    try:
        listeners = await listeners_for("localhost", port, 8)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert [s.getsockname()[:2] for s in listeners] == [("127.0.0.1", port), ("::1", port)]
    finally:
        for listener in listeners:
            listener.close()
