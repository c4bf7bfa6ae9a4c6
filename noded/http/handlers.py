"""The procedures: one table, thin handlers (parse, ask the supervisor, answer)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from noded.http.keys import CONFIG, DESCRIPTORS, GUARD, IDENTITY, RELOAD, SUPERVISOR
from noded.http.openapi import openapi_document
from noded.metrics import CONTENT_TYPE
from noded.policy.rules import Caller
from rpc_client import protocol
from rpc_client.errors import BadRequest, MethodNotAllowed, UnknownProcedure

Handler = Callable[[web.Application, dict[str, Any], Caller | None], Awaitable[dict[str, Any]]]


async def start_function(
    app: web.Application, body: dict[str, Any], caller: Caller | None
) -> dict[str, Any]:
    request = protocol.StartFunctionRequest.from_wire(body)
    guard, supervisor = app[GUARD], app[SUPERVISOR]
    guard.check_function(caller, request)
    spec = supervisor.checked(request)
    guard.check_args(caller, request, spec)
    app[DESCRIPTORS].admit_call()
    return (await supervisor.start(request, caller, spec)).to_wire()


async def wait_for_function(
    app: web.Application, body: dict[str, Any], caller: Caller | None
) -> dict[str, Any]:
    request = protocol.WaitForFunctionRequest.from_wire(body)
    supervisor = app[SUPERVISOR]
    call = supervisor.find(request.fnc_id)
    app[GUARD].check_call(caller, call, protocol.WAIT_FOR_FUNCTION)
    return (await supervisor.wait(call, request.timeout, request.output_from)).to_wire()


async def abort_function(
    app: web.Application, body: dict[str, Any], caller: Caller | None
) -> dict[str, Any]:
    supervisor = app[SUPERVISOR]
    call = supervisor.find(protocol.AbortFunctionRequest.from_wire(body).fnc_id)
    app[GUARD].check_call(caller, call, protocol.ABORT_FUNCTION)
    return (await supervisor.abort(call, "aborted", caller)).to_wire()


async def list_functions(
    app: web.Application, body: dict[str, Any], caller: Caller | None
) -> dict[str, Any]:
    return {"functions": app[SUPERVISOR].listing(app[GUARD].owner_filter(caller))}


async def identify(
    app: web.Application, body: dict[str, Any], caller: Caller | None
) -> dict[str, Any]:
    return app[IDENTITY].to_wire()


async def describe_functions(
    app: web.Application, body: dict[str, Any], caller: Caller | None
) -> dict[str, Any]:
    return {"functions": _described(app, caller)}


async def reload_functions(
    app: web.Application, body: dict[str, Any], caller: Caller | None
) -> dict[str, Any]:
    outcome = await app[RELOAD]()
    return {
        "reloaded": outcome.reloaded,
        "error": outcome.error,
        "functions": _described(app, caller),
    }


def _described(app: web.Application, caller: Caller | None) -> dict[str, Any]:
    """DescribeFunctions' functions: those the client may run."""
    functions = app[SUPERVISOR].registry.describe(app[CONFIG].default_limits)
    return app[GUARD].callable_functions(caller, functions)


PROCEDURES: dict[str, Handler] = {
    protocol.START_FUNCTION: start_function,
    protocol.WAIT_FOR_FUNCTION: wait_for_function,
    protocol.ABORT_FUNCTION: abort_function,
    protocol.LIST_FUNCTIONS: list_functions,
    protocol.IDENTIFY: identify,
    protocol.DESCRIBE_FUNCTIONS: describe_functions,
    protocol.RELOAD_FUNCTIONS: reload_functions,
}


async def dispatch(request: web.Request) -> web.Response:
    """``PUT /<Procedure>``: find the handler, decode the body, answer JSON."""
    name = request.match_info["procedure"]
    handler = PROCEDURES.get(name)
    if handler is None:
        raise UnknownProcedure(
            f"no procedure {request.path!r}; procedures are: {', '.join(sorted(PROCEDURES))}"
        )
    if request.method != "PUT":
        raise MethodNotAllowed(f"{name} must be called with PUT, not {request.method}")
    guard = request.app[GUARD]
    caller = guard.caller(request)
    guard.check_procedure(caller, name)
    body = protocol.parse_body(await read_body(request))
    return json_response(await handler(request.app, body, caller))


async def read_body(request: web.Request) -> bytes:
    """The request body, within the idle timeout: a client that trickles it is cut off."""
    limit_s = request.app[CONFIG].idle_timeout_s
    try:
        if request.content.is_eof():  # all of it came with the headers: no wait, no timer
            return await request.read()
        async with asyncio.timeout(limit_s):
            return await request.read()
    except TimeoutError:
        if request.transport is not None:
            request.transport.close()
        raise BadRequest(f"request body not received within {limit_s:g} s") from None
    except (HttpProcessingError, RequestPayloadError, zlib.error) as exc:  # say, not gzip
        reason = " ".join(str(getattr(exc, "message", "") or exc).split())[:200]
        raise BadRequest(f"request body could not be decoded: {reason}") from None


async def metrics_page(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format."""
    guard = request.app[GUARD]
    caller = guard.caller(request)
    guard.check_procedure(caller, "GET /metrics")
    body = request.app[SUPERVISOR].metrics.render(guard.metrics_filter(caller))
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def openapi_page(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI document, with the functions the client may run."""
    guard = request.app[GUARD]
    caller = guard.caller(request)
    guard.check_procedure(caller, "GET /openapi.json")
    return json_response(openapi_document(_described(request.app, caller)))


def json_response(answer: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=protocol.dumps(answer), status=status, content_type=protocol.JSON_CONTENT_TYPE
    )
