"""The procedures of ganeti-masterd: one table, thin handlers (parse, registry or
events, answer)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from masterd.daemon.job_handlers import JOB_PROCEDURES
from masterd.daemon.keys import (
    CALLER_OF,
    COMMAND_RUNNER,
    COMMANDS,
    CONFIG,
    EVENTS,
    MASTERS,
    METRICS,
    REGISTRY,
)
from masterd.daemon.metrics import CONTENT_TYPE
from masterd.daemon.openapi import openapi_document
from masterd.daemon.registry import Entry
from masterd.daemon.roles import Caller, check_allowed, check_is
from rpc_client import master_protocol as wire
from rpc_client import protocol
from rpc_client.errors import (
    BadRequest,
    MethodNotAllowed,
    NotRegistered,
    UnknownCommand,
    UnknownProcedure,
)

Handler = Callable[[web.Application, dict[str, Any], Caller | None], Awaitable[dict[str, Any]]]

#: how long a client may take to send its body once its headers came
_BODY_TIMEOUT_S = 30.0


async def register(app: web.Application, body: dict[str, Any], caller: Caller | None) -> Any:
    request = wire.RegisterRequest.from_wire(body)
    check_is(caller, request.name)
    _check_owns(app, caller, request.uuid)
    await app[REGISTRY].register(request)
    app[METRICS].registrations.inc()
    return {"heartbeat_s": app[CONFIG].heartbeat_s, "masters": app[MASTERS].copy()}


async def heartbeat(app: web.Application, body: dict[str, Any], caller: Caller | None) -> Any:
    request = wire.HeartbeatRequest.from_wire(body)
    _check_owns(app, caller, request.uuid)
    app[METRICS].heartbeats.inc()
    return {"reregister": app[REGISTRY].heartbeat(request)}


async def report(app: web.Application, body: dict[str, Any], caller: Caller | None) -> Any:
    request = wire.ReportRequest.from_wire(body)
    entry = _calling_node(app, request.uuid, caller, "then send the events again")
    return {"acked": await app[EVENTS].report(request, request.uuid, entry.record.name)}


async def call_master(app: web.Application, body: dict[str, Any], caller: Caller | None) -> Any:
    request = wire.CallMasterRequest.from_wire(body)
    entry = _calling_node(app, request.uuid, caller, "then call again")
    spec = app[COMMANDS].get(request.command)
    if spec is None:
        known = ", ".join(app[COMMANDS].names()) or "none (ganeti-masterd --commands MODS)"
        raise UnknownCommand(f"no master command {request.command!r}; commands: {known}")
    spec.check_args(request.args)
    kwargs = spec.keywords(request.args, entry.record.name)
    return await app[COMMAND_RUNNER].run(spec, kwargs, request.timeout)


async def list_nodes(app: web.Application, body: dict[str, Any], caller: Caller | None) -> Any:
    return {"nodes": app[REGISTRY].listing()}


async def wait_for_events(app: web.Application, body: dict[str, Any], caller: Caller | None) -> Any:
    events, position = await app[EVENTS].wait(wire.WaitForEventsRequest.from_wire(body))
    return {"events": [e.to_wire() for e in events], "next": position}


def _calling_node(app: web.Application, uuid: str, caller: Caller | None, then: str) -> Entry:
    """The registered node that calls (heard from now); ``NotRegistered`` if none has
    that uuid, ``Forbidden`` if the certificate is another node's."""
    entry = app[REGISTRY].get(uuid)
    if entry is None:
        raise NotRegistered(f"no node with uuid {uuid} registered here: register, {then}")
    check_is(caller, entry.record.name)
    app[REGISTRY].seen(entry)
    return entry


def _check_owns(app: web.Application, caller: Caller | None, uuid: str) -> None:
    """Under TLS a uuid registered under another name is not this certificate's."""
    entry = app[REGISTRY].get(uuid) if caller is not None else None
    if entry is not None:
        check_is(caller, entry.record.name)


PROCEDURES: dict[str, Handler] = {
    wire.REGISTER: register,
    wire.HEARTBEAT: heartbeat,
    wire.REPORT: report,
    wire.LIST_NODES: list_nodes,
    wire.WAIT_FOR_EVENTS: wait_for_events,
    wire.CALL_MASTER: call_master,
    **JOB_PROCEDURES,
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
    caller = request.app[CALLER_OF](request)
    check_allowed(caller, name)
    body = protocol.parse_body(await read_body(request))
    return json_response(await handler(request.app, body, caller))


async def read_body(request: web.Request) -> bytes:
    """The request body, within a time limit: a client that trickles it is cut off."""
    try:
        async with asyncio.timeout(_BODY_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        if request.transport is not None:
            request.transport.close()
        raise BadRequest(f"request body not received within {_BODY_TIMEOUT_S:g} s") from None
    except (HttpProcessingError, RequestPayloadError, zlib.error) as exc:
        reason = " ".join(str(getattr(exc, "message", "") or exc).split())[:200]
        raise BadRequest(f"request body could not be decoded: {reason}") from None


async def metrics_page(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format."""
    check_allowed(request.app[CALLER_OF](request), "/metrics")
    response = web.Response(body=request.app[METRICS].render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def openapi_page(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the procedures, their requests and the error body."""
    check_allowed(request.app[CALLER_OF](request), "/openapi.json")
    return json_response(openapi_document())


def json_response(answer: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=protocol.dumps(answer), status=status, content_type=protocol.JSON_CONTENT_TYPE
    )
