"""call_function's safe retries, Busy, NodeRestarted, WrongNode and registered errors."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from masterd.call import CallOptions, RetryPolicy, call_function, wait_for_call
from masterd.local import LocalNode
from rpc_client.client import NodeClient
from rpc_client.errors import (
    CallTimeout,
    ConnectionLost,
    FunctionFailed,
    NodeBusy,
    NodeRestarted,
    NodeShuttingDown,
    UnknownFunctionCall,
    WrongNode,
    register_function_error,
    unregister_function_error,
)
from rpc_client.protocol import FncId
from tests.fakes import LossyProxy, fake_node
from tests.helpers import error_of, eventually, run_node, start_ignoring_sigterm, still_alive


@pytest.mark.parametrize("procedure", ["StartFunction", "WaitForFunction"])
async def test_a_lost_answer_is_retried_and_the_function_runs_once(
    node: LocalNode, tmp_path: Path, procedure: str
) -> None:
    runs = tmp_path / "runs"
    proxy = LossyProxy(node.port, procedure)
    async with fake_node(proxy) as port, NodeClient("127.0.0.1", port) as client:
        value = await call_function(
            client, "count_run", {"path": str(runs), "value": "v"}, 20,
            options=CallOptions(wait_s=0.3),
        ) if procedure == "StartFunction" else await call_function(
            client, "sleep_then", {"seconds": 0.6, "value": "v"}, 20,
            options=CallOptions(wait_s=0.2),
        )  # fmt: skip
    assert value == "v"
    assert proxy.dropped == 1
    if procedure == "StartFunction":
        assert runs.read_text() == "run\n"  # exactly one execution


async def test_busy_is_retried_after_retry_after_within_the_deadline() -> None:
    async with run_node(["--max-functions", "1"]) as node, node.client() as client:
        await client.start_function("sleep", {"seconds": 1}, timeout=0)
        began = time.monotonic()
        assert await call_function(client, "echo", {"value": 1}, timeout=15) == 1
        assert time.monotonic() - began >= 0.5  # it had to wait for the first call to end


async def test_busy_until_the_deadline_raises_node_busy() -> None:
    async with run_node(["--max-functions", "1"]) as node, node.client() as client:
        await client.start_function("sleep", {"seconds": 10}, timeout=0)
        began = time.monotonic()
        with pytest.raises(NodeBusy):
            await call_function(client, "echo", {"value": 1}, timeout=1.5)
        assert time.monotonic() - began < 1.5 + 1


async def test_no_deadline_gives_up_after_the_policys_attempts() -> None:
    async with run_node(["--max-functions", "1"]) as node, node.client() as client:
        await client.start_function("sleep", {"seconds": 10}, timeout=0)
        policy = RetryPolicy(attempts_without_deadline=2)
        with pytest.raises(NodeBusy):
            await call_function(
                client, "echo", {"value": 1}, None, options=CallOptions(retry=policy)
            )


async def test_shutting_down_is_raised(tmp_path: Path) -> None:
    async with run_node(["--shutdown-grace", "3"]) as node, node.client() as client:
        await start_ignoring_sigterm(client, tmp_path / "ready", seconds=30)
        node.signal(signal.SIGTERM)
        await eventually(lambda: "shutdown.terminate" in node.log_text())
        with pytest.raises(NodeShuttingDown):
            await call_function(client, "echo", {"value": 1}, timeout=5)


async def test_a_daemon_restarted_mid_call_gives_node_restarted(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        with pytest.raises(CallTimeout) as info:
            await call_function(client, "sleep", {"seconds": 30}, timeout=0.5)
        fnc_id = info.value.fnc_id
        assert fnc_id is not None
        first.signal(signal.SIGKILL)  # a crash: nothing is cleaned up
        await first.wait_exit(10)
    orphan = FncId.parse(fnc_id).cpid
    try:
        async with (
            run_node(workdir=tmp_path, port=first.port) as second,
            second.client() as client,
        ):
            assert second.port == first.port
            with pytest.raises(NodeRestarted, match="restarted") as restarted:
                await wait_for_call(client, fnc_id, timeout=5)
        assert isinstance(restarted.value, UnknownFunctionCall)
    finally:
        # the crashed daemon's function process runs on until something kills it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(orphan, signal.SIGKILL)
        assert await still_alive([orphan]) == []


async def test_wait_for_call_collects_a_call_after_a_call_timeout(client: NodeClient) -> None:
    with pytest.raises(CallTimeout) as info:
        await call_function(client, "sleep", {"seconds": 1}, timeout=0.3)
    assert await wait_for_call(client, info.value.fnc_id or "", timeout=10) == 1


async def test_a_uuid_mismatch_is_wrong_node(node: LocalNode) -> None:
    uuid = "00000000-0000-4000-8000-000000000000"
    async with NodeClient("127.0.0.1", node.port, expected_uuid=uuid) as client:
        with pytest.raises(WrongNode, match=uuid):
            await call_function(client, "echo", {"value": 1}, timeout=5)


async def test_the_right_uuid_is_checked_once_per_connection(node: LocalNode) -> None:
    async with node.client() as plain:
        uuid = (await plain.identify())["uuid"]
    async with NodeClient("127.0.0.1", node.port, expected_uuid=uuid) as client:
        for n in range(3):
            assert await call_function(client, "echo", {"value": n}, timeout=5) == n


async def test_registered_exception_classes_are_raised_for_remote_types(
    client: NodeClient,
) -> None:
    class DiskFull(Exception):
        pass

    register_function_error("DiskFull", DiskFull)
    try:
        with pytest.raises(DiskFull, match="no space left") as info:
            await call_function(client, "fill_disk", {}, timeout=10)
    finally:
        unregister_function_error("DiskFull")
    exc = info.value
    assert exc.fnc_id and exc.node == client.name  # type: ignore[attr-defined]
    assert "fill_disk" in exc.traceback  # type: ignore[attr-defined]
    assert isinstance(exc.__cause__, FunctionFailed)
    with pytest.raises(FunctionFailed):  # unregistered again
        await call_function(client, "fill_disk", {}, timeout=10)


async def test_abort_on_timeout_aborts_the_remote_call(client: NodeClient) -> None:
    began = time.monotonic()
    with pytest.raises(CallTimeout) as info:
        await call_function(client, "sleep", {"seconds": 30}, timeout=0.5, abort_on_timeout=True)
    assert time.monotonic() - began < 0.5 + 1.0 + 0.5
    assert info.value.aborted is True
    state = await client.wait_for_function(info.value.fnc_id or "", timeout=10)
    assert error_of(state)["type"] == "FunctionAborted" and error_of(state)["reason"] == "aborted"


async def test_abort_after_is_passed_on(client: NodeClient) -> None:
    with pytest.raises(FunctionFailed) as info:
        await call_function(
            client, "sleep", {"seconds": 30}, 10, options=CallOptions(abort_after_s=0.3)
        )
    assert info.value.type == "FunctionAborted"
    assert info.value.error["reason"] == "abort_after"


def test_the_backoff_stays_at_its_cap_for_any_attempt() -> None:
    policy = RetryPolicy()
    assert [policy.backoff_s(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    # 2 ** 1024 is past a float's range: attempt 1025 (35 min of retries) overflowed
    assert policy.backoff_s(1025) == policy.backoff_s(10**9) == 2.0
    tiny = RetryPolicy(first_backoff_s=5e-324, max_backoff_s=5e-324)
    assert tiny.backoff_s(100_000) == 5e-324


async def test_a_call_retrying_past_attempt_1024_ends_in_the_transport_error() -> None:
    """A node resetting every connection, a tiny backoff: over a thousand retries in a
    second or so; attempt 1025's backoff overflowed, ending the call in OverflowError."""
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_reset_each_connection, args=(listener,), daemon=True).start()
    tiny = RetryPolicy(first_backoff_s=1e-300, max_backoff_s=1e-300)
    try:
        async with NodeClient("127.0.0.1", listener.getsockname()[1], name="reset") as client:
            with pytest.raises((ConnectionLost, CallTimeout)):
                await call_function(client, "echo", {"value": 1}, 4,
                                    options=CallOptions(retry=tiny))  # fmt: skip
    finally:
        listener.close()


def _reset_each_connection(listener: socket.socket) -> None:
    linger = struct.pack("ii", 1, 0)  # close with a RST
    with contextlib.suppress(OSError):
        while True:
            conn, _ = listener.accept()
            conn.recv(1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            conn.close()
