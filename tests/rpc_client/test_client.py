"""NodeClient over real sockets: every way a node can fail maps to one RPCError class."""

from __future__ import annotations

import asyncio
import ssl
import time

import orjson
import pytest

from masterd.call import call_function, wait_for_call
from masterd.local import LocalNode, free_port
from rpc_client import transport
from rpc_client.client import ClientTimeouts, NodeClient
from rpc_client.errors import (
    ConnectionLost,
    NodeTimeout,
    NodeUnreachable,
    ProtocolError,
    RPCError,
    TLSError,
    UnknownFunction,
)
from tests.fakes import (
    Behaviour,
    answers_html,
    fake_node,
    hangs_up,
    never_answers,
    read_http_message,
    speaks_garbage,
)

SHORT = ClientTimeouts(connect_s=2.0, margin_s=0.5, quick_s=1.0)


async def test_refused_connection_is_node_unreachable() -> None:
    async with NodeClient("127.0.0.1", free_port(), timeouts=SHORT) as client:
        began = time.monotonic()
        with pytest.raises(NodeUnreachable) as info:
            await client.identify()
        assert time.monotonic() - began < 1
        assert info.value.node == client.name


async def test_unresolvable_name_is_node_unreachable() -> None:
    async with NodeClient("no-such-node.invalid", 1811, timeouts=SHORT) as client:
        with pytest.raises(NodeUnreachable, match=r"no-such-node\.invalid"):
            await client.identify()


async def test_a_silent_node_is_detected_by_the_clients_own_timeout() -> None:
    async with (
        fake_node(never_answers) as port,
        NodeClient("127.0.0.1", port, timeouts=SHORT) as client,
    ):
        began = time.monotonic()
        with pytest.raises(NodeTimeout):
            await client.wait_for_function("1:2:3.000000:0123456789abcdef", timeout=0.5)
        assert 0.9 <= time.monotonic() - began < 3  # the wait (0.5 s) plus the margin (0.5 s)


def test_a_lost_connection_is_not_an_unreachable_node() -> None:
    # one may have run the request (retried with its request_id), the other never sent it
    assert not issubclass(ConnectionLost, NodeUnreachable)
    assert not issubclass(NodeUnreachable, ConnectionLost)


@pytest.mark.parametrize(
    ("behaviour", "error", "words"),
    [
        (speaks_garbage, ProtocolError, "not an HTTP answer"),
        (answers_html, ProtocolError, "not JSON"),
        (hangs_up, ConnectionLost, "connection lost"),
    ],
    ids=["garbage", "html", "hangs-up"],
)
async def test_bad_answers_map_to_their_errors(
    behaviour: Behaviour, error: type[RPCError], words: str
) -> None:
    async with (
        fake_node(behaviour) as port,
        NodeClient("127.0.0.1", port, timeouts=SHORT) as client,
    ):
        with pytest.raises(error, match=words):
            await client.identify()


async def test_remote_errors_arrive_as_their_classes(client: NodeClient) -> None:
    with pytest.raises(UnknownFunction) as info:
        await client.start_function("nope", timeout=1)
    assert info.value.node == client.name
    assert isinstance(info.value, RPCError)


async def test_the_client_reuses_its_connection(node: LocalNode, client: NodeClient) -> None:
    for _ in range(5):
        await client.identify()
    import psutil

    connections = [
        c
        for c in psutil.Process(node.pid).net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED
    ]
    assert len(connections) == 1


def _lower_errors() -> list[tuple[Exception, type[RPCError]]]:
    return [
        (TimeoutError(), NodeTimeout),
        (transport.ConnectTimeout("no connection within 5 s"), NodeTimeout),
        (transport.PoolTimeout("all 64 connections to node:1811 stayed in use"), NodeTimeout),
        (transport.CannotConnect("node", 1811, ConnectionRefusedError(111, "refused")),
         NodeUnreachable),
        (transport.CannotConnect("node", 1811, OSError(-2, "Name or service not known")),
         NodeUnreachable),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), TLSError),
        (transport.ConnectionClosed("closed", answered=False), ConnectionLost),
        (ConnectionResetError(104, "reset"), ConnectionLost),
        (transport.MalformedAnswer("not an HTTP answer"), ProtocolError),
        (transport.AnswerTooLarge("over 256 MiB"), ProtocolError),
    ]  # fmt: skip


@pytest.mark.parametrize(("lower", "mapped"), _lower_errors(), ids=lambda v: type(v).__name__)
def test_every_lower_error_is_mapped_in_one_place(lower: Exception, mapped: type[RPCError]) -> None:
    client = NodeClient("node", 1811)
    error = client.mapped_error(lower, "Identify", 1.0)
    assert type(error) is mapped
    assert error.node == client.name


OURS = "4242:4250:1763800000.123456:9f3a61c2d4e5f607"


async def answers_about_another_call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A node (or something in between) that answers every wait with another call's
    state: finished, with a result."""
    while await read_http_message(reader):
        body = orjson.dumps({"fnc_id": "4242:4251:1763800001.500000:0123456789abcdef",
                             "finished": True, "result": "not yours", "error": None})  # fmt: skip
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        await writer.drain()


async def test_an_answer_about_another_call_is_a_protocol_error_not_a_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        fake_node(answers_about_another_call) as port,
        NodeClient("127.0.0.1", port, timeouts=SHORT) as client,
    ):
        words = rf"asked about call {OURS}, the node answered about call 4242:4251:"
        with pytest.raises(ProtocolError, match=words):
            await client.wait_for_function(OURS, timeout=1)
        with pytest.raises(ProtocolError, match=words):
            await client.abort_function(OURS)
        with pytest.raises(ProtocolError, match=words):
            await wait_for_call(client, OURS, timeout=5)
    logged = [vars(r)["fields"] for r in caplog.records
              if r.msg == "client.answer_about_another_call"]  # fmt: skip
    assert logged and logged[0]["fnc_id"] == OURS


def answers_with(
    start: dict[str, object], wait: dict[str, object] | None, asked: list[bytes]
) -> Behaviour:
    """A node that answers StartFunction with ``start`` and WaitForFunction with ``wait``
    (both 200), and notes each procedure it is asked in ``asked``."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while message := await read_http_message(reader):
            asked.append(message.split(b" ", 2)[1])
            body = orjson.dumps(start if message.startswith(b"PUT /StartFunction") else wait)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            await writer.drain()

    return behaviour


def _state(**change: object) -> dict[str, object]:
    return {"fnc_id": OURS, "finished": True, "result": "x", "error": None, **change}


@pytest.mark.parametrize(
    ("start", "wait", "words"),
    [
        (_state(fnc_id="../../etc"), None, "fnc_id '../../etc' is not"),
        (_state(progress={"fraction": 7, "message": 1, "at": "x"}), None, "progress.fraction 7"),
        (_state(output_next=-5), None, "output_next -5 is not an integer >= 0"),
        (_state(result=None, error={"type": 5, "message": None}), None, "error.type 5 is not"),
        (_state(finished=False), _state(progress={"fraction": 0.5, "message": "", "at": "x"}),
         "progress.at 'x' is not a number"),
    ],
)  # fmt: skip
async def test_a_call_state_outside_the_contract_is_a_protocol_error_not_retried(
    start: dict[str, object],
    wait: dict[str, object] | None,
    words: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: list[bytes] = []
    async with (
        fake_node(answers_with(start, wait, asked)) as port,
        NodeClient("127.0.0.1", port, timeouts=SHORT) as client,
    ):
        with pytest.raises(ProtocolError, match=f"bad call state: call state {words}"):
            await call_function(client, "echo", {"value": 1}, timeout=10, wait_s=1)
    assert asked == [b"/StartFunction"] + ([b"/WaitForFunction"] if wait else [])  # once each
    logged = [vars(r)["fields"] for r in caplog.records if r.msg == "client.bad_call_state"]
    assert len(logged) == 1 and words in logged[0]["error"]
    assert logged[0]["fnc_id"] == (OURS if wait else None)
