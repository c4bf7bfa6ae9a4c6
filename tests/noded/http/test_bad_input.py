"""Input that used to get a 500 or slip through: each a clear 400 now, the daemon healthy."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from masterd.local import LocalNode
from rpc_client.errors import NodeBusy, UnknownFunctionCall
from rpc_client.protocol import FncId
from tests.helpers import alive, eventually, put, run_node
from tests.noded.http.test_request_errors import assert_error

ECHO = {"fn_name": "echo", "timeout": 5}


async def raw_http(node: LocalNode, request: bytes) -> tuple[bytes, bytes]:
    """Send bytes as they are; the status line and the body of the answer."""
    reader, writer = await asyncio.open_connection(node.host, node.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


@pytest.mark.parametrize(
    "fnc_id",
    [
        "1" + "0" * 5000 + ":2:3.000000:0123456789abcdef",  # int() of it would raise
        "1:2" + "0" * 5000 + ":3.000000:0123456789abcdef",
        "1:2:3.000000:0123456789abcdef\n",  # $ would have let the newline through
    ],
    ids=["huge ppid", "huge cpid", "trailing newline"],
)
async def test_fnc_ids_are_matched_whole_and_bounded(shared_node: LocalNode, fnc_id: str) -> None:
    await assert_error(shared_node, "/WaitForFunction", {"fnc_id": fnc_id, "timeout": 0},
                       status=400, type_="BadRequest")  # fmt: skip


async def test_a_request_id_with_a_trailing_newline_is_bad(shared_node: LocalNode) -> None:
    body = {**ECHO, "fn_args": {"value": 1}, "request_id": "job-1\n"}
    await assert_error(shared_node, "/StartFunction", body, status=400, type_="BadRequest")


async def test_a_body_that_is_not_its_content_encoding_is_bad(shared_node: LocalNode) -> None:
    status, body = await raw_http(
        shared_node,
        b"PUT /Identify HTTP/1.1\r\nHost: n\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    assert status.endswith(b"400 Bad Request") and b'"BadRequest"' in body
    assert b"could not be decoded" in body
    await eventually(lambda: "http.bad_message" in shared_node.log_text())
    assert "Traceback" not in shared_node.log_text()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"PUT /Identify HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nab\r\n0\r\n\r\n",
        b"PUT /Identify HTTP/1.1\r\nHost: n\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"PUT /Identify HTTP/1.1\r\nHost: n\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    ],
    ids=["bad chunk size", "duplicate content-length", "header over 8 KiB"],
)
async def test_what_the_http_parser_refuses_gets_the_contracts_body(
    node: LocalNode, request_bytes: bytes
) -> None:
    status, body = await raw_http(node, request_bytes)
    assert b" 400 " in status
    assert body.startswith(b'{"error":{"type":"BadRequest","message":"malformed HTTP request: ')
    await eventually(lambda: "http.bad_message" in node.log_text())
    log = node.log_text()
    assert "Traceback" not in log and "ERROR" not in log
    assert (await put(node, "/Identify", {}))[0] == 200


async def test_a_flood_of_bad_requests_logs_a_line_a_second(node: LocalNode) -> None:
    bad = b"PUT /Identify HTTP/1.1\r\nHost: n\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"
    for _ in range(50):
        await raw_http(node, bad)
    await eventually(lambda: "http.bad_message" in node.log_text())
    assert node.log_text().count("http.bad_message") <= 3


@pytest.mark.parametrize(
    ("literal", "ok"),
    [
        (b"18446744073709551615", True),  # 2**64 - 1
        (b"-9223372036854775808", True),  # -2**63
        (b"18446744073709551616", False),
        (b"-9223372036854775809", False),
        (b"123456789012345678901234567890", False),
    ],
)
async def test_integers_beyond_64_bits_are_refused_not_rounded(
    shared_node: LocalNode, literal: bytes, ok: bool
) -> None:
    raw = b'{"fn_name": "echo", "timeout": 5, "fn_args": {"value": ' + literal + b"}}"
    status, answer, _ = await put(shared_node, "/StartFunction", raw=raw)
    if ok:
        assert (status, answer["result"]) == (200, int(literal))
    else:
        assert (status, answer["error"]["type"]) == (400, "BadRequest")
        assert "64 bits" in answer["error"]["message"]


async def test_long_digit_strings_are_just_strings(shared_node: LocalNode) -> None:
    body = {**ECHO, "fn_args": {"value": "123456789012345678901234567890"}}
    status, answer, _ = await put(shared_node, "/StartFunction", body)
    assert (status, answer["result"]) == (200, "123456789012345678901234567890")


async def test_a_request_id_compares_arguments_as_json_values(shared_node: LocalNode) -> None:
    async with shared_node.client() as client:
        one = await client.start_function("sleep", {"seconds": 0.1}, timeout=5,
                                          request_id="same-json")  # fmt: skip
        same = await client.start_function("sleep", {"seconds": 0.10}, timeout=5,
                                           request_id="same-json")  # fmt: skip
        whole = await client.start_function("echo", {"value": 1}, timeout=5, request_id="w")
        also = await client.start_function("echo", {"value": 1.0}, timeout=5, request_id="w")
    assert same.fnc_id == one.fnc_id and also.fnc_id == whole.fnc_id


async def test_busy_counts_calls_still_starting() -> None:
    async with run_node(["--max-functions", "1"]) as node, node.client() as client:
        await client.start_function("sleep", {"seconds": 10}, timeout=0)
        with pytest.raises(NodeBusy, match=r"1 function is running and 0 starting"):
            await client.start_function("echo", {"value": 1}, timeout=0)


async def test_a_call_that_ended_while_no_daemon_ran_is_not_called_killed(
    tmp_path: Path,
) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        state = await client.start_function("sleep", {"seconds": 60}, timeout=0)
        first.signal(signal.SIGKILL)  # a crash: the call goes on without a daemon
        await first.wait_exit(10)
    orphan = FncId.parse(state.fnc_id).cpid
    os.killpg(orphan, signal.SIGKILL)  # it ends before any daemon is back
    await eventually(lambda: not alive(orphan))
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        with pytest.raises(UnknownFunctionCall, match="had ended by the time") as info:
            await client.wait_for_function(state.fnc_id, timeout=0)
        assert "killed" not in str(info.value)
