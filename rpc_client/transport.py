"""A lean HTTP/1.1 client for the wire: send one request, read its answer, keep the
connection for the next request to the same node.

Why not aiohttp's client: in a fan-out to a thousand nodes its per-request machinery
(URL objects, header multidicts, request and response objects, traces, happy eyeballs,
a timer per phase) was about two thirds of the master's CPU.  Here a request is one
protocol object per connection, one future and one deadline.  Answers are parsed by
httptools (llhttp, the parser of Node.js and of aiohttp itself), not by hand.

What this raises, for :mod:`rpc_client.client` to map to the contract's errors:
:class:`CannotConnect` (nothing was sent), :class:`ssl.SSLError` (the handshake failed),
:class:`ConnectionClosed` (the node hung up before answering whole),
:class:`MalformedAnswer`, :class:`AnswerTooLarge`, :class:`ConnectTimeout`,
:class:`PoolTimeout` and :class:`TimeoutError`.

One connection, its answers and what it believes of them: :mod:`rpc_client.connection`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from rpc_client.connection import (
    Answer,
    AnswerTooLarge,
    Connection,
    ConnectionClosed,
    Endpoint,
    MalformedAnswer,
)

__all__ = [
    "Answer",
    "AnswerTooLarge",
    "CannotConnect",
    "ConnectTimeout",
    "ConnectionClosed",
    "Endpoint",
    "MalformedAnswer",
    "Pool",
    "PoolTimeout",
]

#: the largest answer read; the daemon's result limit is 64 MiB, and an answer carries
#: one result plus its frame
MAX_ANSWER_BYTES = 256 * 2**20
#: a kept connection unused this long is closed rather than reused: shorter than the
#: node's own idle close (noded's --idle-timeout, 30 s by default), so that a request is
#: not sent on a connection the node is closing at that moment
IDLE_S = 25.0
#: connections kept per node between requests; more in flight at once are closed after
MAX_IDLE_PER_NODE = 8
#: connections open at once per node, in use or kept; a request beyond waits for one
#: (within its own timeout: then :class:`PoolTimeout`)
MAX_CONNECTIONS_PER_NODE = 64
#: TLS handshakes at once per pool.  A handshake costs a few milliseconds of CPU on both
#: sides; unbounded, a thousand of them all progress at once, each takes as long as all
#: of them, and past a few thousand nodes every one misses its connect bound (Ganeti
#: capped its fan-out for this).  Bounded, they finish in turn, and the connect bound
#: counts from a node's own turn: waiting for one is bounded only by the request's.
MAX_HANDSHAKES = 64

USER_AGENT = "noded-rpc"


class CannotConnect(ConnectionError):
    """No connection to ``host:port``: refused, unresolvable, no route."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {os_error}")
        self.host, self.port, self.os_error = host, port, os_error


class ConnectTimeout(TimeoutError):
    """No connection (and handshake) within the connect bound."""


class PoolTimeout(TimeoutError):
    """No connection to the node free within the request's timeout: all of the pool's
    ``max_connections_per_node`` to it were in use."""


@dataclass(eq=False)
class Pool:
    """Connections kept per :class:`Endpoint` between requests; share one among many
    nodes.  :meth:`close` ends every connection, in use or not."""

    max_answer_bytes: int = MAX_ANSWER_BYTES
    idle_s: float = IDLE_S
    max_idle_per_node: int = MAX_IDLE_PER_NODE
    max_handshakes: int = MAX_HANDSHAKES
    max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE
    _handshakes: asyncio.Semaphore | None = None
    _idle: dict[Endpoint, list[Connection]] = field(default_factory=dict)
    _open: set[Connection] = field(default_factory=set)
    _slots: dict[Endpoint, asyncio.Semaphore] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_idle_per_node", "max_handshakes", "max_connections_per_node"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    async def request(
        self,
        endpoint: Endpoint,
        path: str,
        body: bytes,
        *,
        timeout_s: float,
        connect_s: float,
        content_type: str = "application/json",
    ) -> Answer:
        """PUT ``body`` to ``path``, all within ``timeout_s`` (connecting within
        ``connect_s`` of it); the answer, whatever its status."""
        request = _request_bytes(endpoint, path, body, content_type)
        deadline = asyncio.get_running_loop().time() + timeout_s
        slots = self._slots.get(endpoint)
        if slots is None:
            slots = self._slots[endpoint] = asyncio.Semaphore(self.max_connections_per_node)
        await self._take_slot(slots, endpoint, deadline)
        try:
            return await self._request(endpoint, request, connect_s, deadline)
        finally:
            slots.release()

    async def _take_slot(
        self, slots: asyncio.Semaphore, endpoint: Endpoint, deadline: float
    ) -> None:
        """A turn among the node's connections, by ``deadline``."""
        if not slots.locked():
            await slots.acquire()  # at once
            return
        try:
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        except TimeoutError:
            raise PoolTimeout(f"all {self.max_connections_per_node} connections to "
                              f"{endpoint.authority} stayed in use") from None  # fmt: skip

    async def _request(
        self, endpoint: Endpoint, request: bytes, connect_s: float, deadline: float
    ) -> Answer:
        kept = self._take_idle(endpoint)
        if kept is not None:
            try:
                return await self._exchange(kept, request, deadline)
            except ConnectionClosed as exc:
                if exc.answered:
                    raise
                # the node closed a kept connection as it was reused: a new one, once
        connection = await self._connect(endpoint, connect_s, deadline)
        return await self._exchange(connection, request, deadline)

    async def close(self) -> None:
        """Close every connection."""
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost

    @property
    def open_connections(self) -> int:
        """Connections open now, in use or kept."""
        return len(self._open)

    async def _exchange(self, connection: Connection, request: bytes, deadline: float) -> Answer:
        try:
            answer = await connection.send(request, deadline)
        except BaseException:
            connection.abort()  # an answer may still come: the connection is not reused
            raise
        if connection.reusable:
            self._keep_idle(connection)
        return answer

    async def _connect(self, endpoint: Endpoint, connect_s: float, deadline: float) -> Connection:
        """A new connection within ``connect_s``; :class:`TimeoutError` at ``deadline``
        if that comes first."""
        if endpoint.ssl is None:
            return await self._connect_now(endpoint, connect_s, deadline)
        if self._handshakes is None:
            self._handshakes = asyncio.Semaphore(self.max_handshakes)
        async with asyncio.timeout_at(deadline), self._handshakes:
            return await self._connect_now(endpoint, connect_s, deadline)

    async def _connect_now(
        self, endpoint: Endpoint, connect_s: float, deadline: float
    ) -> Connection:
        loop = asyncio.get_running_loop()
        connection = Connection(endpoint, self.max_answer_bytes, self._forget)
        left_s = deadline - loop.time()
        try:
            async with asyncio.timeout(min(connect_s, left_s)):
                await loop.create_connection(
                    lambda: connection, endpoint.host, endpoint.port, ssl=endpoint.ssl,
                    server_hostname=endpoint.server_hostname if endpoint.ssl else None,
                )  # fmt: skip
        except TimeoutError:
            connection.abort()
            if left_s <= connect_s:
                raise
            raise ConnectTimeout(f"no connection to {endpoint.authority} within "
                                 f"{connect_s:g} s") from None  # fmt: skip
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise CannotConnect(endpoint.host, endpoint.port, exc) from exc
        self._open.add(connection)
        return connection

    def _take_idle(self, endpoint: Endpoint) -> Connection | None:
        idle = self._idle.get(endpoint)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self.idle_s:
                return connection
            connection.close()
        return None

    def _keep_idle(self, connection: Connection) -> None:
        idle = self._idle.setdefault(connection.endpoint, [])
        if len(idle) >= self.max_idle_per_node:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        idle.append(connection)

    def _forget(self, connection: Connection) -> None:
        """A connection ended (either side closed it): it is neither open nor kept."""
        self._open.discard(connection)
        idle = self._idle.get(connection.endpoint)
        if idle and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[connection.endpoint]


def _request_bytes(endpoint: Endpoint, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: {endpoint.authority}\r\nUser-Agent: {USER_AGENT}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body
