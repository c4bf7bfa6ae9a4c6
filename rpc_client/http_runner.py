"""What aiohttp's HTTP parser refuses (a bad chunk size, a duplicate Content-Length, a
header over 8 KiB, ...) is answered with the contract's error body and logged as one
WARNING line, rate-limited: anyone who can connect could otherwise flood the log with a
ten-line traceback per request.  Both daemons (ganeti-noded, ganeti-masterd) serve with it.

aiohttp answers those in ``RequestHandler.handle_error``, before any middleware runs; the
runner below makes its connections use a handler that answers them our way, with the
daemon's own ``error_response``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from rpc_client.errors import BadRequest, RemoteError
from rpc_client.logs import RateLimit, event

log = logging.getLogger("rpc_client.http")

#: at most one log line per this many seconds for malformed HTTP; the rest are counted
_LOG_EVERY_S = 1.0

_bad_messages = RateLimit(_LOG_EVERY_S)

#: a daemon's answer to a request error: the contract's error body with its status
ErrorResponse = Callable[[RemoteError], web.StreamResponse]


class _ContractRequestHandler(RequestHandler):
    error_response: ErrorResponse

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError):
            # a body that is not what its headers say (not gzip, cut short): the client's
            # mistake, already answered; aiohttp meets it again draining the body
            _log_bad_message(None, " ".join(str(exc).split())[:200])
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        reason = " ".join((message or str(exc)).split())[:200]
        _log_bad_message(request.remote, reason)
        response = self.error_response(BadRequest(f"malformed HTTP request: {reason}"))
        response.force_close()
        return response


def _log_bad_message(peer: str | None, reason: str) -> None:
    if _bad_messages.allow():
        event(log, "http.bad_message", logging.WARNING, peer=peer, error=reason,
              suppressed=_bad_messages.take_suppressed())  # fmt: skip


class _ContractServer(web.Server):
    error_response: ErrorResponse

    def __call__(self) -> RequestHandler:
        handler = _ContractRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.error_response = self.error_response
        return handler


class ContractRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer malformed HTTP with the contract's body,
    made by ``error_response``."""

    def __init__(self, app: web.Application, *, error_response: ErrorResponse, **kwargs: Any):
        super().__init__(app, **kwargs)
        self._error_response = error_response

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        server = _ContractServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
        server.error_response = self._error_response
        return server
