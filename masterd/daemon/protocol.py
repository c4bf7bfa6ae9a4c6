"""Malformed HTTP (a bad chunk size, a duplicate Content-Length, a header over 8 KiB) is
answered with the contract's error body and logged as one WARNING line, rate-limited,
as ganeti-noded does (``noded.http.protocol``, which masterd may not import).

aiohttp answers those in ``RequestHandler.handle_error``, before any middleware runs; the
runner below makes its connections use a handler that answers them our way.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from masterd.daemon.middleware import error_response
from rpc_client.errors import BadRequest
from rpc_client.logs import RateLimit, event

log = logging.getLogger("masterd.http")

_bad_messages = RateLimit(1.0)


class _ContractRequestHandler(RequestHandler):
    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError):
            _log_bad_message(None, " ".join(str(exc).split())[:200])
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:  # fmt: skip
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        reason = " ".join((message or str(exc)).split())[:200]
        _log_bad_message(request.remote, reason)
        response = error_response(BadRequest(f"malformed HTTP request: {reason}"))
        response.force_close()
        return response


def _log_bad_message(peer: str | None, reason: str) -> None:
    if _bad_messages.allow():
        event(log, "http.bad_message", logging.WARNING, peer=peer, error=reason,
              suppressed=_bad_messages.take_suppressed())  # fmt: skip


class _ContractServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ContractRequestHandler(self, loop=self._loop, **self._kwargs)


class MasterdRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer malformed HTTP with the contract's body."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _ContractServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
