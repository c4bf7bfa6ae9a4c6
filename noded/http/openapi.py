"""``GET /openapi.json``: an OpenAPI 3.1 document of the daemon, made from the code.

The request bodies come from :data:`rpc_client.protocol.REQUESTS` and
:data:`~rpc_client.protocol.FIELD_SCHEMAS` (what the parsers accept), each function's
``fn_args`` from the registry (what its argument check accepts), the error statuses from
the exception classes; only the answers' shapes are written here.
"""

from __future__ import annotations

from typing import Any

from noded.version import __version__
from rpc_client import errors, protocol

_JSON = "application/json"
_STRING = {"type": "string"}
_NULLABLE_OBJECT = {"type": ["object", "null"]}

ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": _STRING, "message": _STRING},
        }
    },
}

CALL_STATE = {
    "type": "object",
    "required": ["fnc_id", "finished", "result", "error"],
    "properties": {
        "fnc_id": protocol.FIELD_SCHEMAS["fnc_id"],
        "finished": {"type": "boolean"},
        "result": {"description": "the function's return value, any JSON value"},
        "error": {
            "type": ["object", "null"],
            "required": ["type", "message"],
            "properties": {
                "type": _STRING,
                "message": _STRING,
                "traceback": {"type": ["string", "null"]},
            },
        },
        "progress": _NULLABLE_OBJECT,
        "output_next": {"type": "integer", "minimum": 0},
        "output": {
            "type": "object",
            "required": ["from", "next", "skipped", "events"],
            "properties": {
                "from": {"type": "integer"},
                "next": {"type": "integer"},
                "skipped": {"type": "integer"},
                "events": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}


def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


FUNCTIONS = {"type": "object", "additionalProperties": _object(
    doc=_STRING, params={"type": "object"}, limits={"type": "object"},
)}  # fmt: skip
ANSWERS: dict[str, dict[str, Any]] = {
    protocol.START_FUNCTION: CALL_STATE,
    protocol.WAIT_FOR_FUNCTION: CALL_STATE,
    protocol.ABORT_FUNCTION: CALL_STATE,
    protocol.LIST_FUNCTIONS: _object(
        functions={
            "type": "array",
            "items": _object(
                fnc_id=_STRING,
                fn_name=_STRING,
                finished={"type": "boolean"},
                outcome={"enum": ["running", "ok", "failed", "aborted"]},
                error_type={"type": ["string", "null"]},
                started={"type": "number"},
                elapsed_s={"type": "number"},
                pid={"type": "integer"},
                cpu_s={"type": ["number", "null"]},
                rss_bytes={"type": ["integer", "null"]},
                progress=_NULLABLE_OBJECT,
            ),
        }
    ),
    protocol.IDENTIFY: _object(
        name=_STRING,
        uuid=_STRING,
        pid={"type": "integer"},
        version=_STRING,
        started={"type": "number"},
        boot_id=_STRING,
    ),
    protocol.DESCRIBE_FUNCTIONS: _object(functions=FUNCTIONS),
    protocol.RELOAD_FUNCTIONS: _object(
        reloaded={"type": "boolean"}, error={"type": ["string", "null"]}, functions=FUNCTIONS
    ),
}

#: the request errors every procedure may answer, and those of some
_EVERY: tuple[type[errors.RemoteError], ...] = (
    errors.BadRequest, errors.Forbidden, errors.RequestTooLarge, errors.NodeShuttingDown,
)  # fmt: skip
_MORE: dict[str, tuple[type[errors.RemoteError], ...]] = {
    protocol.START_FUNCTION: (
        errors.InvalidArguments, errors.UnknownFunction, errors.RequestIdConflict,
        errors.InsufficientStorage, errors.NodeBusy,
    ),
    protocol.WAIT_FOR_FUNCTION: (errors.UnknownFunctionCall,),
    protocol.ABORT_FUNCTION: (errors.UnknownFunctionCall,),
}  # fmt: skip


def openapi_document(functions: dict[str, Any]) -> dict[str, Any]:
    """The document, with ``functions`` (DescribeFunctions' entries) as StartFunction's
    ``fn_args`` schemas."""
    paths: dict[str, Any] = {
        f"/{name}": {"put": _operation(name, functions)} for name in protocol.REQUESTS
    }
    paths["/metrics"] = {"get": _document("Prometheus metrics", "text/plain", {"type": "string"})}
    paths["/openapi.json"] = {"get": _document("this document", _JSON, {"type": "object"})}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ganeti-noded",
            "version": __version__,
            "description": "The node daemon's procedures (doc/protocol, version 1.1).",
        },
        "paths": paths,
    }


def _operation(name: str, functions: dict[str, Any]) -> dict[str, Any]:
    body = protocol.request_schema(name)
    if name == protocol.START_FUNCTION and functions:
        body["oneOf"] = [
            {"properties": {"fn_name": {"const": fn_name}, "fn_args": entry["params"]}}
            for fn_name, entry in sorted(functions.items())
        ]
    responses: dict[str, Any] = {
        "200": {"description": "the answer", "content": {_JSON: {"schema": ANSWERS[name]}}}
    }
    for error in (*_EVERY, *_MORE.get(name, ())):
        entry = responses.setdefault(
            str(error.status), {"description": "", "content": {_JSON: {"schema": ERROR_BODY}}}
        )
        entry["description"] = " or ".join(filter(None, [entry["description"], error.wire_type]))
    return {
        "operationId": name,
        "requestBody": {"required": False, "content": {_JSON: {"schema": body}}},
        "responses": responses,
    }


def _document(what: str, media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "responses": {
            "200": {"description": what, "content": {media_type: {"schema": schema}}},
            "403": {"description": "Forbidden",
                    "content": {_JSON: {"schema": ERROR_BODY}}},
        }
    }  # fmt: skip
