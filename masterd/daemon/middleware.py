"""The one place where errors become HTTP answers with the contract's error body."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from masterd.daemon.handlers import PROCEDURES, json_response
from masterd.daemon.keys import CONFIG, METRICS
from masterd.daemon.roles import log_refused
from rpc_client.errors import (
    Forbidden,
    InsufficientStorage,
    NodeBusy,
    RemoteError,
    RequestTooLarge,
    StoreUnavailable,
)
from rpc_client.logs import event

log = logging.getLogger("masterd.http")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except RemoteError as exc:
        if isinstance(exc, Forbidden):
            log_refused(request, exc)
        if isinstance(exc, InsufficientStorage | StoreUnavailable):
            metrics.store_errors.labels(exc.wire_type).inc()
            event(log, "store.failed", logging.WARNING, path=request.path, error=exc.message)
        response = error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_request_bytes
        metrics.rejections.labels("max_request_bytes").inc()
        response = error_response(RequestTooLarge(
            f"request body is over the limit of {limit} bytes (ganeti-masterd "
            "--max-request-bytes)"))  # fmt: skip
    except web.HTTPException:
        raise
    except Exception:  # a bug of ours: answer 500 and keep serving
        event(log, "http.internal_error", level=logging.ERROR, path=request.path, exc_info=True)
        response = json_response(
            {"error": {"type": "InternalError", "message": "internal error; see the daemon log"}},
            status=500,
        )
    name = request.match_info.get("procedure", "")
    procedure = name if name in PROCEDURES else "other"  # unknown paths: one label, bounded
    metrics.count_request(procedure, response.status)
    return response


def error_response(exc: RemoteError) -> web.Response:
    response = json_response(
        {"error": {"type": exc.wire_type, "message": exc.message}}, status=exc.status
    )
    if exc.status == 405:
        response.headers["Allow"] = "PUT"
    if isinstance(exc, NodeBusy | StoreUnavailable) and exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(int(exc.retry_after_s))
    return response
