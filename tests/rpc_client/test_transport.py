"""The lean HTTP/1.1 transport over real sockets: answers however delimited, kept
connections and their failures, bounds."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from masterd.local import free_port
from rpc_client.transport import (
    IDLE_S,
    AnswerTooLarge,
    CannotConnect,
    ConnectionClosed,
    ConnectTimeout,
    Endpoint,
    MalformedAnswer,
    Pool,
    PoolTimeout,
)
from tests.fakes import Behaviour, fake_node, read_http_message
from tests.helpers import eventually
from tests.pki import Pki


@contextlib.asynccontextmanager
async def serving(handler: Behaviour) -> AsyncIterator[tuple[Endpoint, list[int]]]:
    """A loopback server (tests.fakes.fake_node); yields its endpoint and the count of
    connections it accepted."""
    accepted: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await handler(reader, writer)

    async with fake_node(counted) as port:
        yield Endpoint("127.0.0.1", port), accepted


def _answer(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(extra) + b"\r\n" + body


async def keeps_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_http_message(reader):
        writer.write(_answer(b'{"ok": true}', b"Retry-After: 3\r\n"))
        await writer.drain()


async def request(pool: Pool, endpoint: Endpoint, timeout_s: float = 5.0) -> bytes:
    answer = await pool.request(endpoint, "/Identify", b"{}", timeout_s=timeout_s, connect_s=2)
    return answer.body


async def test_a_connection_is_kept_and_reused_and_headers_are_read() -> None:
    pool = Pool()
    async with serving(keeps_answering) as (endpoint, accepted):
        answers = [
            await pool.request(endpoint, "/Identify", b"{}", timeout_s=5, connect_s=2)
            for _ in range(5)
        ]
        assert len(accepted) == 1 and pool.open_connections == 1
        assert answers[0].status == 200 and answers[0].headers["retry-after"] == "3"
        await pool.close()
        assert pool.open_connections == 0


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",  # ends at EOF
    ],
    ids=["chunked", "until-eof"],
)
async def test_answers_however_delimited(wire: bytes) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_message(reader)
        writer.write(wire)
        await writer.drain()

    pool = Pool()
    async with serving(answer) as (endpoint, _):
        assert await request(pool, endpoint) == b"hello"
    await pool.close()


async def test_a_kept_connection_the_node_dropped_unanswered_is_retried_on_a_new_one() -> None:
    async def once_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_http_message(reader)
        writer.write(_answer(b"first"))
        await writer.drain()
        await read_http_message(reader)  # the second request is read, then dropped

    pool = Pool()
    async with serving(once_per_connection) as (endpoint, accepted):
        assert await request(pool, endpoint) == b"first"
        assert await request(pool, endpoint) == b"first"  # over a second connection
        assert len(accepted) == 2
    await pool.close()


async def test_a_node_that_hangs_up_mid_answer_is_not_retried() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_message(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")
        await writer.drain()

    pool = Pool()
    async with serving(half) as (endpoint, accepted):
        with pytest.raises(ConnectionClosed) as info:
            await request(pool, endpoint)
        assert info.value.answered and len(accepted) == 1
    await pool.close()


async def test_an_answer_past_its_deadline_times_out_and_its_connection_is_dropped() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_message(reader)
        await asyncio.sleep(30)

    pool = Pool()
    async with serving(slow) as (endpoint, _):
        with pytest.raises(TimeoutError):
            await request(pool, endpoint, timeout_s=0.3)
        await eventually(lambda: pool.open_connections == 0)
    await pool.close()


async def test_an_answer_over_the_limit_and_garbage_are_refused() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_message(reader)
        writer.write(_answer(b"x" * 5000))
        await writer.drain()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_message(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    pool = Pool(max_answer_bytes=4096)
    async with serving(big) as (endpoint, _):
        with pytest.raises(AnswerTooLarge):
            await request(pool, endpoint)
    async with serving(garbage) as (endpoint, _):
        with pytest.raises(MalformedAnswer, match=r"SSH-2\.0"):
            await request(pool, endpoint)
    await pool.close()


async def test_a_connection_the_node_closes_while_idle_is_forgotten() -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_message(reader)
        writer.write(_answer(b"one"))
        await writer.drain()

    pool = Pool()
    async with serving(one_then_close) as (endpoint, _):
        assert await request(pool, endpoint) == b"one"
        await eventually(lambda: pool.open_connections == 0)
    await pool.close()


async def test_nothing_listening_is_cannot_connect() -> None:
    pool = Pool()
    with pytest.raises(CannotConnect) as info:
        await request(pool, Endpoint("127.0.0.1", free_port()))
    assert isinstance(info.value.os_error, ConnectionRefusedError)
    await pool.close()


async def test_handshakes_take_turns_and_a_turn_is_not_charged_to_the_connect_bound(
    pki: Pki,
) -> None:
    # Nodes that never finish a handshake: each holds its turn until its own connect
    # bound.  Five of them one at a time take 5 x 0.4 s, far past the bound of each.
    concurrent, most = [0], [0]

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        concurrent[0] += 1
        most[0] = max(most[0], concurrent[0])
        try:
            while await reader.read(4096):  # the ClientHello, then EOF once the client left
                pass
        finally:
            concurrent[0] -= 1

    context = pki.master().client_context()
    pool = Pool(max_handshakes=1)
    async with serving(stalls) as (plain, accepted):
        endpoint = Endpoint(plain.host, plain.port, context, None)
        began = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(pool.request(endpoint, "/Identify", b"{}", timeout_s=10, connect_s=0.4)
              for _ in range(5)),
            return_exceptions=True,
        )  # fmt: skip
        took = asyncio.get_running_loop().time() - began
    assert all(isinstance(r, ConnectTimeout) for r in results), results
    assert most[0] == 1 and len(accepted) == 5
    assert took >= 5 * 0.4
    await pool.close()


# --- a node that says more than it was asked (issue 29, item 19) -------------------------


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "two-reads"])
async def test_an_interim_100_continue_is_skipped_for_the_answer(split: bool) -> None:
    async def continues(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_http_message(reader):
            writer.write(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
            )
            if split:
                await writer.drain()
                await asyncio.sleep(0.05)
            writer.write(_answer(b"the answer", b"X-Real: 1\r\n"))
            await writer.drain()

    pool = Pool()
    async with serving(continues) as (endpoint, accepted):
        for _ in range(2):
            answer = await pool.request(endpoint, "/Identify", b"{}", timeout_s=5, connect_s=2)
            assert (answer.status, answer.body) == (200, b"the answer")
            assert "link" not in answer.headers and answer.headers["x-real"] == "1"
        assert len(accepted) == 1  # and the connection is kept: it said nothing unasked
    await pool.close()


async def test_an_interim_answer_then_a_hang_up_is_no_answer() -> None:
    async def continues_then_hangs_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_http_message(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()

    pool = Pool()
    async with serving(continues_then_hangs_up) as (endpoint, _):
        with pytest.raises(ConnectionClosed):
            await request(pool, endpoint)
    await pool.close()


async def test_an_upgrade_nobody_asked_for_is_malformed() -> None:
    async def upgrades(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_message(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\n"
                     b"Connection: upgrade\r\n\r\n" + _answer(b"after"))  # fmt: skip
        await writer.drain()
        await asyncio.sleep(1)

    pool = Pool()
    async with serving(upgrades) as (endpoint, _):
        with pytest.raises(MalformedAnswer):
            await request(pool, endpoint)
    await pool.close()


@pytest.mark.parametrize(
    "extra",
    [
        b"HTTP/1.1 200 OK\r\nX-Forged: 1\r\nContent-Length: 6\r\n\r\nforged",
        b"HTTP/1.1 200 OK\r\nX-Forged: 1\r\n",  # cut short: the parser holds it
        b"garbage\r\n",
    ],
    ids=["whole-answer", "half-answer", "garbage"],
)
async def test_bytes_after_an_answer_change_nothing_and_the_connection_is_dropped(
    extra: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def says_more(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_http_message(reader):
            writer.write(_answer(b"asked", b"X-Real: 1\r\nContent-Type: application/json\r\n")
                         + extra)  # fmt: skip
            await writer.drain()

    pool = Pool()
    async with serving(says_more) as (endpoint, accepted):
        first = await pool.request(endpoint, "/Identify", b"{}", timeout_s=5, connect_s=2)
        await asyncio.sleep(0.05)  # whatever else was coming has come
        assert (first.body, first.headers) == (b"asked", {
            "content-length": "5", "x-real": "1", "content-type": "application/json"
        })  # fmt: skip
        await eventually(lambda: pool.open_connections == 0)
        assert await request(pool, endpoint) == b"asked"
        assert len(accepted) == 2  # the second request went over a new connection
    assert "transport.unasked_bytes" in caplog.text
    await pool.close()


async def test_bytes_after_an_answer_in_a_later_read_drop_the_kept_connection() -> None:
    async def says_more_later(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_http_message(reader):
            writer.write(_answer(b"asked"))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(_answer(b"unasked"))
            await writer.drain()

    pool = Pool()
    async with serving(says_more_later) as (endpoint, accepted):
        assert await request(pool, endpoint) == b"asked"
        await eventually(lambda: pool.open_connections == 0)
        assert await request(pool, endpoint) == b"asked"
        assert len(accepted) == 2
    await pool.close()


async def test_connections_per_node_are_capped_and_a_request_waits_its_turn() -> None:
    open_now, most = [0], [0]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])
        try:
            while await read_http_message(reader):
                await asyncio.sleep(0.2)
                writer.write(_answer(b"slow"))
                await writer.drain()
        finally:
            open_now[0] -= 1

    pool = Pool(max_connections_per_node=2)
    async with serving(slow) as (endpoint, accepted):
        answers = await asyncio.gather(*(request(pool, endpoint) for _ in range(6)))
        assert answers == [b"slow"] * 6
        assert most[0] == 2 and len(accepted) == 2 and pool.open_connections <= 2
        # two requests hold both connections: a third waits, and its timeout still holds
        held = [asyncio.create_task(request(pool, endpoint)) for _ in range(2)]
        await asyncio.sleep(0)  # they run: each takes its turn before it first waits
        with pytest.raises(PoolTimeout, match=r"all 2 connections to 127\.0\.0\.1:\d+"):
            await request(pool, endpoint, timeout_s=0.1)
        assert await asyncio.gather(*held) == [b"slow"] * 2
    await pool.close()
    with pytest.raises(ValueError, match="max_connections_per_node must be at least 1"):
        Pool(max_connections_per_node=0)


def test_a_kept_connection_is_closed_before_the_node_would_close_it() -> None:
    """The node closes a connection idle for --idle-timeout (30 s by default); a request
    sent on one just then would be lost with it."""
    from noded.config import NodedConfig

    (node_idle_s,) = [f.default for f in dataclasses.fields(NodedConfig)
                      if f.name == "idle_timeout_s"]  # fmt: skip
    assert isinstance(node_idle_s, float)
    assert node_idle_s > IDLE_S and Pool().idle_s == IDLE_S
