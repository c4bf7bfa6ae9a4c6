"""The listening socket, accepted by the daemon itself, so that running out of file
descriptors never resets a connection unanswered.

With ``loop.create_server``, uvloop leaves accepting to libuv, which meets ``EMFILE`` by
closing a spare descriptor, then accepting and closing every connection waiting in the
backlog: each of those clients sees its connection reset, with no answer.  Here the site
accepts each connection itself and hands it to the loop (``connect_accepted_socket``):

- a connection the :class:`~rpc_client.serving.descriptors.DescriptorBudget` has no descriptor
  for is answered ``503 Busy`` with ``Retry-After`` and closed;
- when ``accept`` itself fails with ``EMFILE``, the site closes the descriptor it keeps
  in reserve, accepts one connection on it, answers it ``503 Busy``, and takes the
  reserve back; meanwhile the other connections wait in the backlog, unharmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from rpc_client.logs import RateLimit, event
from rpc_client.serving.descriptors import RETRY_AFTER_S, DescriptorBudget

log = logging.getLogger("rpc_client.serving")

#: how long a refused connection may take to read its answer and close
_REFUSE_TIMEOUT_S = 1.0
#: refusals under way at most (each holds a descriptor); past it, accepting waits
_MAX_REFUSING = 8
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
_LOG_EVERY_S = 1.0
_accept_failures = RateLimit(_LOG_EVERY_S)


def _busy_answer() -> bytes:
    body = orjson.dumps({"error": {"type": "Busy", "message": (
        "out of file descriptors for new connections; retry later"
    )}})  # fmt: skip
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: {RETRY_AFTER_S}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


BUSY_ANSWER = _busy_answer()


async def refuse_busy(sock: socket.socket) -> None:
    """Answer ``503 Busy`` on a connection not taken in, then close it, once the client
    has read the answer and closed its side (closing with its request unread would reset
    the connection, and the client might never see the answer); bounded in time."""
    loop = asyncio.get_running_loop()
    try:
        sock.setblocking(False)
        async with asyncio.timeout(_REFUSE_TIMEOUT_S):
            await loop.sock_sendall(sock, BUSY_ANSWER)
            sock.shutdown(socket.SHUT_WR)
            while await loop.sock_recv(sock, 65536):
                pass  # the request, unread; until the client closes
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


def peer_text(peername: Any) -> str:
    """A socket's peer as ``address:port`` (``[v6]:port``), ``?`` if unknown."""
    if not peername:
        return "?"
    host, port = peername[0], peername[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def open_listener(address: Any, family: int, backlog: int) -> socket.socket:
    """A non-blocking listening TCP socket on ``address``."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # "::" beside "0.0.0.0", as asyncio binds them
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind(address)
        listener.listen(backlog)
        listener.setblocking(False)
    except OSError as exc:
        listener.close()
        # as loop.create_server says it: the address, and the errno kept
        reason = (exc.strerror or str(exc)).lower()
        raise OSError(
            exc.errno, f"error while attempting to bind on address {address!r}: {reason}"
        ) from exc
    return listener


async def listeners_for(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """A listener on each address ``host`` resolves to (``localhost``: 127.0.0.1 and
    ::1), as ``loop.create_server`` makes them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    try:
        for family, address in dict.fromkeys((info[0], info[4]) for info in infos):
            listeners.append(open_listener(address, family, backlog))
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


async def check_port_free(host: str | None, port: int) -> None:
    """``OSError`` (EADDRINUSE) now if ``host:port`` cannot be listened on: a daemon
    asks before it makes or takes anything, then listens for real once it is built
    (port 0 is always free)."""
    if port != 0:
        for listener in await listeners_for(host, port, 1):
            listener.close()


class Listening:
    """What aiohttp's runner asks of a site's server: its sockets, and to close."""

    def __init__(self, listeners: list[socket.socket], accepting: list[asyncio.Task[None]]):
        self.sockets = listeners
        self._accepting = accepting

    def close(self) -> None:
        for task in self._accepting:
            task.cancel()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._accepting, return_exceptions=True)


def accept_on(
    listeners: list[socket.socket], accept_forever: Callable[[socket.socket], Any], name: str
) -> Listening:
    """One accepting task per listener, as a site's server."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(accept_forever(listener), name=name) for listener in listeners]
    return Listening(listeners, tasks)


class ReserveDescriptor:
    """One descriptor held back, to be given up for a moment when none is left."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self.take()

    def take(self) -> bool:
        if self._fd is None:
            with contextlib.suppress(OSError):
                self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd is not None

    def release(self) -> bool:
        """Close it (True), so that the next descriptor opened is the one it held."""
        if self._fd is None:
            return False
        os.close(self._fd)
        self._fd = None
        return True


class PlainSite(web.TCPSite):
    """``web.TCPSite`` (plain HTTP) that answers ``503 Busy`` when out of descriptors."""

    def __init__(self, *args: Any, budget: DescriptorBudget, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = budget
        self._reserve = ReserveDescriptor()
        self._refusing = asyncio.Semaphore(_MAX_REFUSING)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; its listeners are made here
        listeners = await listeners_for(self._host, self._port, self._backlog)
        self._server = accept_on(listeners, self._accept_forever, "accept")  # type: ignore[assignment]
        self._bound_port = listeners[0].getsockname()[1]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await super().stop()

    async def _accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:
                await self._accept_failed(loop, listener, exc)
                continue
            if self._budget.admit_connection():
                self._background(self._serve(sock))
            else:
                await self._refuse(sock)

    async def _serve(self, sock: socket.socket) -> None:
        server = self._runner.server
        assert server is not None
        try:
            await asyncio.get_running_loop().connect_accepted_socket(server, sock)
        except OSError:
            sock.close()

    async def _refuse(self, sock: socket.socket) -> None:
        """Refuse in the background, up to _MAX_REFUSING at once; past that, wait."""
        await self._refusing.acquire()
        task = self._background(refuse_busy(sock))
        task.add_done_callback(lambda _: self._refusing.release())

    async def _accept_failed(
        self, loop: asyncio.AbstractEventLoop, listener: socket.socket, exc: OSError
    ) -> None:
        if exc.errno == errno.ECONNABORTED:
            return  # the client left before it was accepted
        if _accept_failures.allow():
            event(log, "http.accept_failed", logging.WARNING, error=str(exc),
                  suppressed=_accept_failures.take_suppressed())  # fmt: skip
        if exc.errno in _OUT_OF_DESCRIPTORS and self._reserve.release():
            try:
                await self._refuse_on_reserve(loop, listener)
            finally:
                self._reserve.take()
        else:  # no reserve to give (or not out of descriptors): wait a little, go on
            self._reserve.take()
            await asyncio.sleep(0.05)

    async def _refuse_on_reserve(
        self, loop: asyncio.AbstractEventLoop, listener: socket.socket
    ) -> None:
        """Accept one connection on the reserve's descriptor and answer it ``Busy``;
        accepting waits until it is closed and the reserve is taken back."""
        try:
            async with asyncio.timeout(_REFUSE_TIMEOUT_S):  # it may have left meanwhile
                sock, _ = await loop.sock_accept(listener)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            return
        self._budget.refused_connection()
        await refuse_busy(sock)

    def _background(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
