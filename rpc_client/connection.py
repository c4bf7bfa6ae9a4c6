"""One connection to a node (:mod:`rpc_client.transport`'s): one request at a time, its
answer parsed by httptools as it arrives.

What a connection believes: one answer per request.  Interim answers (``100
Continue`` and the other 1xx but 101) are skipped; the headers and body are collected
afresh for each answer (as uvicorn's httptools protocol does), so nothing after an answer
changes it; and a connection on which the node sends anything nobody asked for (bytes
after an answer, in the same read or later) is closed, never kept for another request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

from rpc_client.logs import event

log = logging.getLogger("rpc_client.connection")


class ConnectionClosed(ConnectionError):
    """The node closed the connection before its answer was whole."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        #: whether any byte of the answer had arrived
        self.answered = answered


class MalformedAnswer(ValueError):
    """What the node sent is not an HTTP answer."""


class AnswerTooLarge(ValueError):
    """The answer is over the pool's ``max_answer_bytes``."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go: a connection is kept and reused per endpoint."""

    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    #: the name the node's certificate must carry (``None``: the host)
    server_hostname: str | None = None

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: its status, its headers (names in lower case) and its body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection(asyncio.Protocol):
    """One connection to a node: one request at a time, answers parsed as they arrive."""

    def __init__(
        self, endpoint: Endpoint, max_answer_bytes: int, on_closed: Callable[[Connection], None]
    ) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self._on_closed = on_closed
        self.closed = False
        self.idle_since = 0.0
        self._max_answer_bytes = max_answer_bytes
        self._answer: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._received = 0
        self._headers_done = False
        self._keep = False

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self._unasked(data)  # nothing was asked: a node that talks out of turn
            return
        self._received += len(data)
        if self._received > self._max_answer_bytes:
            self._fail(AnswerTooLarge(f"the answer is over {self._max_answer_bytes} bytes"))
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._answer is None:  # bytes after the answer, in the same read
                self._unasked(data)  # the answer stands; the connection is not reused
                return
            self._fail(MalformedAnswer(f"not an HTTP answer ({exc}): {data[:60]!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_closed(self)
        if self._answer is None or self._answer.done():
            return
        if self._headers_done and not self._delimited():  # an answer that ends at EOF
            self._complete()
            return
        reason = f": {exc}" if exc is not None else ""
        self._fail(ConnectionClosed(f"the node closed the connection{reason}",
                                    answered=self._received > 0))  # fmt: skip

    # --- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is None:  # the answer came already: nobody asked for this one
            raise MalformedAnswer("a second answer to one request")
        self._headers, self._body, self._headers_done = {}, [], False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:  # an upgrade nobody asked for: the parser fails it next
            return
        if status < 200:  # 100 Continue, 103 Early Hints: the answer is still to come
            self._headers, self._body, self._headers_done = {}, [], False
            return
        self._keep = self._parser.should_keep_alive()
        self._complete()

    # --- for the pool -----------------------------------------------------------------

    def send(self, request: bytes, deadline: float) -> asyncio.Future[Answer]:
        """Write ``request``; the future of its answer, which fails with
        :class:`TimeoutError` at ``deadline`` (of the loop's clock).  One timer handle,
        not a timeout context: a fan-out to a thousand nodes felt the difference."""
        assert self.transport is not None
        self._reset()
        self._parser = httptools.HttpResponseParser(self)  # one per answer, made here only
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self._timer = loop.call_at(deadline, self._expire)
        self.transport.write(request)
        return self._answer

    @property
    def reusable(self) -> bool:
        return self._keep and not self.closed

    def abort(self) -> None:
        """End the connection at once (a failed or abandoned exchange)."""
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """End a connection that is done with, politely (FIN, not RST)."""
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def _unasked(self, data: bytes) -> None:
        """The node sent what nobody asked for: the connection is not reused."""
        event(log, "transport.unasked_bytes", logging.WARNING, node=self.endpoint.authority,
              preview=repr(data[:60]))  # fmt: skip
        self.abort()

    def _expire(self) -> None:
        self._timer = None
        self._fail(TimeoutError())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _delimited(self) -> bool:
        return "content-length" in self._headers or "transfer-encoding" in self._headers

    def _complete(self) -> None:
        answer = Answer(self._parser.get_status_code(), self._headers, b"".join(self._body))
        future, self._answer = self._answer, None
        self._stop_timer()
        if not self._keep:
            self.close()
        if future is not None and not future.done():
            future.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        future, self._answer = self._answer, None
        self.abort()
        if future is not None and not future.done():
            future.set_exception(exc)
