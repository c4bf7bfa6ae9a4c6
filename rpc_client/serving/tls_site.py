"""A TCP site that accepts its TLS connections itself, so that a refused handshake is
logged with the peer and the reason.

With ``ssl=`` given to ``create_server``, the event loop drops a failed handshake
silently (uvloop logs it only in debug mode), and an operator whose master cannot connect
sees nothing on the node.  Here the site accepts each socket and hands it to
``loop.connect_accepted_socket`` with the TLS context: the loop makes the handshake as
before, and its failure is raised here, where the peer is known.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from aiohttp import web

from rpc_client.logs import RateLimit, event
from rpc_client.serving.descriptors import DescriptorBudget, DoorMetrics
from rpc_client.serving.listener import accept_on, listeners_for, peer_text

log = logging.getLogger("rpc_client.tls")

#: at most one tls.handshake_failed line per this many seconds; the rest are counted
_LOG_EVERY_S = 1.0
_failures = RateLimit(_LOG_EVERY_S)
_accept_failures = RateLimit(_LOG_EVERY_S)
#: handshakes under way at most; past it, accepting waits (a flood of half-open
#: connections cannot take every descriptor)
MAX_HANDSHAKES = 1024


class TLSSite(web.TCPSite):
    """``web.TCPSite`` that logs refused handshakes (``tls.handshake_failed``)."""

    def __init__(
        self,
        *args: Any,
        handshake_timeout_s: float,
        metrics: DoorMetrics,
        budget: DescriptorBudget,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._handshake_timeout_s = handshake_timeout_s
        self._metrics = metrics
        self._budget = budget
        self._handshakes: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_HANDSHAKES)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; its listeners are made here
        listeners = await listeners_for(self._host, self._port, self._backlog)
        self._server = accept_on(listeners, self._accept_forever, "tls accept")  # type: ignore[assignment]
        self._bound_port = listeners[0].getsockname()[1]

    async def stop(self) -> None:
        for task in self._handshakes:
            task.cancel()
        await super().stop()

    async def _accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            # Short of descriptors, connections wait in the backlog (a busy answer would
            # need a handshake): accepted once calls end and free theirs, never reset.
            while not self._budget.admit(1, self._budget.connection_reserve):
                await asyncio.sleep(0.05)
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, say: wait a little, go on
                self._slots.release()
                if _accept_failures.allow():
                    event(log, "tls.accept_failed", logging.WARNING, error=str(exc),
                          suppressed=_accept_failures.take_suppressed())  # fmt: skip
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._handshake(sock, peer_text(peer)))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, sock: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        try:
            await loop.connect_accepted_socket(
                server, sock, ssl=self._ssl_context,
                ssl_handshake_timeout=self._handshake_timeout_s,
            )  # fmt: skip
        except (OSError, TimeoutError, ConnectionError, EOFError) as exc:  # ssl.SSLError too
            sock.close()
            self._failed(peer, exc)
        finally:
            self._slots.release()

    def _failed(self, peer: str, exc: BaseException) -> None:
        reason = handshake_failure(exc)
        self._metrics.tls_failures.labels(reason.split(":")[0]).inc()
        if _failures.allow():
            event(log, "tls.handshake_failed", logging.WARNING, peer=peer, reason=reason,
                  suppressed=_failures.take_suppressed())  # fmt: skip


def handshake_failure(exc: BaseException) -> str:
    """Why a handshake failed, in the words an operator searches for."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or "the certificate did not verify"
        if "expired" in detail:
            return f"expired: {detail}"
        if "issuer" in detail or "self-signed" in detail or "self signed" in detail:
            return f"unknown CA: {detail} (a certificate the --tls-ca did not sign)"
        return f"bad certificate: {detail}"
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "no certificate: the client sent none (one signed by --tls-ca is required)"
    if reason == "HTTP_REQUEST":
        return "plain HTTP: the client spoke HTTP to this TLS port"
    # uvloop's own timeout (ssl_handshake_timeout) is a ConnectionAbortedError
    if isinstance(exc, TimeoutError) or "handshake is taking longer" in str(exc):
        return "timeout: no complete handshake in time"
    if isinstance(exc, ConnectionError | EOFError):
        return "closed: the client left during the handshake"
    return f"refused: {reason}"
