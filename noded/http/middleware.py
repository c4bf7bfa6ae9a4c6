"""The one place where errors become HTTP answers with the contract's error body."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from noded.http.handlers import json_response
from noded.http.keys import CONFIG, SUPERVISOR
from rpc_client.errors import NodeBusy, RemoteError, RequestTooLarge
from rpc_client.logs import event

log = logging.getLogger("noded.http")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RemoteError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_request_bytes
        request.app[SUPERVISOR].metrics.rejections.labels("max_request_bytes").inc()
        event(log, "limit.max_request_bytes", logging.WARNING, path=request.path, limit=limit)
        return error_response(
            RequestTooLarge(
                f"request body is over the limit of {limit} bytes "
                "(ganeti-noded --max-request-bytes)"
            )
        )
    except web.HTTPException:
        raise
    except Exception:  # a bug of ours: answer 500 and keep serving
        event(log, "http.internal_error", level=logging.ERROR, path=request.path, exc_info=True)
        return json_response(
            {"error": {"type": "InternalError", "message": "internal error; see the daemon log"}},
            status=500,
        )


def error_response(exc: RemoteError) -> web.Response:
    response = json_response(
        {"error": {"type": exc.wire_type, "message": exc.message}}, status=exc.status
    )
    if exc.status == 405:
        response.headers["Allow"] = "PUT"
    if isinstance(exc, NodeBusy) and exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(int(exc.retry_after_s))
    return response
