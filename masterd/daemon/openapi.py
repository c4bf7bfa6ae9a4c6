"""``GET /openapi.json`` of ganeti-masterd: every procedure, its request fields and the
error body (the answers' shapes are in PROTOCOL.md part 2)."""

from __future__ import annotations

from typing import Any

from rpc_client import master_protocol as wire
from rpc_client.errors import REMOTE_ERRORS

_STRING = {"type": "string", "minLength": 1}
_STRINGS = {"type": "array", "items": _STRING}
_FIELDS: dict[str, dict[str, Any]] = {
    "uuid": _STRING, "name": _STRING, "address": _STRING, "boot_id": _STRING,
    "instance": _STRING, "version": _STRING, "spool": _STRING,
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "pid": {"type": "integer", "minimum": 1},
    "running": {"type": "integer", "minimum": 0},
    "labels": _STRINGS, "functions": _STRINGS,
    "events": {"type": "array", "items": {"type": "object", "required": ["seq", "type", "at"],
               "properties": {"seq": {"type": "integer", "minimum": 0}, "type": _STRING,
                              "at": {"type": "number"}, "data": {},
                              "fnc_id": {"type": ["string", "null"]}}}},
    "from": {"type": ["integer", "null"], "minimum": 0},
    "timeout": {"type": "number", "minimum": 0},
    "types": {"type": ["array", "null"], "items": _STRING},
    "nodes": {"type": ["array", "null"], "items": _STRING},
    "command": _STRING,
    "args": {"type": "object"},
}  # fmt: skip
_OPTIONAL = {"labels", "functions", "types", "nodes", "args"}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["type", "message"], "properties": {
        "type": {"enum": sorted(REMOTE_ERRORS)}, "message": {"type": "string"}}}},
}  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ganeti-masterd's procedures."""
    paths = {f"/{name}": {"put": _operation(name, fields)}
             for name, fields in wire.MASTER_REQUESTS.items()}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "ganeti-masterd", "version": "1.2"},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }


def _operation(name: str, fields: tuple[str, ...]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {field: _FIELDS[field] for field in fields},
        "required": [field for field in fields if field not in _OPTIONAL],
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "operationId": name,
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": "the answer (PROTOCOL.md part 2)"},
                      "default": {"description": "a request error", **error}},
    }  # fmt: skip
