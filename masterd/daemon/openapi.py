"""``GET /openapi.json`` of ganeti-masterd: every procedure, its request fields and the
error body (the answers' shapes are in PROTOCOL.md part 2)."""

from __future__ import annotations

from typing import Any

from rpc_client import job_protocol as jobs_wire
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
_NUMBER_OR_NULL = {"type": ["number", "null"], "exclusiveMinimum": 0}
#: the job procedures' fields, where they differ from the others' of the same name
_JOB_FIELDS: dict[str, dict[str, Any]] = {
    "fn_name": _STRING, "fn_args": {"type": "object"}, "job_id": _STRING,
    "labels": {"type": ["array", "null"], "items": _STRING},
    "abort_after": _NUMBER_OR_NULL,
    "window": {"type": ["integer", "null"], "minimum": 1},
    "canary": {"type": ["integer", "null"], "minimum": 0},
    "max_failures": {"type": ["integer", "null"], "minimum": 0},
    "request_id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    "results_from": {"type": ["integer", "null"], "minimum": 0},
    "calls": {"type": "boolean"}, "limit": {"type": ["integer", "null"], "minimum": 1},
}  # fmt: skip
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
    paths |= {f"/{name}": {"put": _operation(name, fields, _JOB_FIELDS, jobs_wire.JOB_OPTIONAL)}
              for name, fields in jobs_wire.JOB_REQUESTS.items()}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "ganeti-masterd", "version": "1.2"},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }


def _operation(
    name: str, fields: tuple[str, ...], own: dict[str, dict[str, Any]] | None = None,
    optional: frozenset[str] | set[str] = _OPTIONAL,
) -> dict[str, Any]:  # fmt: skip
    own = own or {}
    schema = {
        "type": "object",
        "properties": {field: own.get(field) or _FIELDS[field] for field in fields},
        "required": [field for field in fields if field not in optional],
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "operationId": name,
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": "the answer (PROTOCOL.md part 2)"},
                      "default": {"description": "a request error", **error}},
    }  # fmt: skip
