"""The noded wire protocol: the one copy both sides import.

Procedure names, request shapes (parsed and checked here, raising :class:`BadRequest`,
and written with ``to_wire`` by the client), the call state object, the failure types a
finished call's error may carry, the fnc_id format, and the JSON codec.  See
``doc/protocol.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from rpc_client.call_state_checks import (
    BAD_OUTPUT,
    checked_error,
    checked_output_next,
    checked_progress,
    is_output,
    shown,
)
from rpc_client.errors import BadRequest

DEFAULT_PORT: Final = 1811
JSON_CONTENT_TYPE: Final = "application/json"

START_FUNCTION: Final = "StartFunction"
WAIT_FOR_FUNCTION: Final = "WaitForFunction"
ABORT_FUNCTION: Final = "AbortFunction"
LIST_FUNCTIONS: Final = "ListFunctions"
IDENTIFY: Final = "Identify"
DESCRIBE_FUNCTIONS: Final = "DescribeFunctions"
#: (1.1) re-import the function modules
RELOAD_FUNCTIONS: Final = "ReloadFunctions"

#: the failure types the daemon itself gives a finished call's ``error.type`` (a function
#: that raised gives its exception's class name instead)
FUNCTION_ABORTED: Final = "FunctionAborted"
FUNCTION_PROCESS_DIED: Final = "FunctionProcessDied"
RESULT_TOO_LARGE: Final = "ResultTooLarge"
INVALID_RESULT: Final = "InvalidResult"
#: (1.1) stopped by one of its limits; ``limit``: "memory", "cpu", "open_files", "processes"
RESOURCE_LIMIT_EXCEEDED: Final = "ResourceLimitExceeded"

#: ListFunctions' ``outcome`` of a call: it runs, or how it ended
ListedOutcome = Literal["running", "ok", "failed", "aborted"]


def listed_outcome(finished: bool, error: dict[str, Any] | None) -> ListedOutcome:
    """A call's ``outcome`` in ListFunctions: ``aborted`` for FunctionAborted (by
    AbortFunction, ``abort_after`` or shutdown), ``failed`` for any other error."""
    if not finished:
        return "running"
    if error is None:
        return "ok"
    return "aborted" if error.get("type") == FUNCTION_ABORTED else "failed"


#: the contract's pattern, with the numbers bounded to what a pid and a time can be (a
#: ppid of thousands of digits is malformed, not a number to convert); used with fullmatch
FNC_ID_PATTERN: Final = r"[1-9][0-9]{0,18}:[1-9][0-9]{0,18}:[0-9]{1,18}\.[0-9]{6}:[0-9a-f]{16}"
FNC_ID_RE: Final = re.compile(FNC_ID_PATTERN)
REQUEST_ID_PATTERN: Final = r"[A-Za-z0-9._:-]{1,128}"
REQUEST_ID_RE: Final = re.compile(REQUEST_ID_PATTERN)

#: Every request field as a JSON Schema: what its parser below accepts (keep the two
#: together; ``GET /openapi.json`` is made from this table, and from :data:`REQUESTS`)
FIELD_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "fn_name": {"type": "string", "minLength": 1},
    "fn_args": {"type": ["object", "null"], "description": "named arguments (null: none)"},
    "timeout": {"type": "number", "minimum": 0,
                "description": "seconds to wait for the result; 0: answer at once"},
    "abort_after": {"type": ["number", "null"], "exclusiveMinimum": 0,
                    "description": "seconds after which the daemon kills the function"},
    "request_id": {"type": ["string", "null"], "pattern": f"^{REQUEST_ID_PATTERN}$",
                   "description": "an idempotency key"},
    "fnc_id": {"type": "string", "pattern": f"^{FNC_ID_PATTERN}$"},
    "output_from": {"type": ["integer", "null"], "minimum": 0,
                    "description": "(1.1) also answer output past this position"},
}  # fmt: skip


#: a run of digits as long as the longest 64-bit integer
_LONG_NUMBER: Final = re.compile(rb"[0-9]{19}")
_INT_RANGE: Final = range(-(2**63), 2**64)


def _int64(text: str) -> int:
    value = int(text)
    if value not in _INT_RANGE:
        raise BadRequest(
            f"the integer {text[:30]}{'...' if len(text) > 30 else ''} is beyond 64 bits; "
            "send a number that large as a string"
        )
    return value


def dumps(value: Any) -> bytes:
    """Encode a JSON value the way both sides put it on the wire."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises ``orjson.JSONDecodeError`` (a ``ValueError``) on bad input."""
    return orjson.loads(data)


#: each procedure's request: its fields, and those that are required
REQUESTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    START_FUNCTION: (("fn_name", "fn_args", "timeout", "abort_after", "request_id"),
                     ("fn_name", "timeout")),
    WAIT_FOR_FUNCTION: (("fnc_id", "timeout", "output_from"), ("fnc_id", "timeout")),
    ABORT_FUNCTION: (("fnc_id",), ("fnc_id",)),
    LIST_FUNCTIONS: ((), ()),
    IDENTIFY: ((), ()),
    DESCRIBE_FUNCTIONS: ((), ()),
    RELOAD_FUNCTIONS: ((), ()),
}  # fmt: skip


def request_schema(procedure: str) -> dict[str, Any]:
    """The JSON Schema of a procedure's request body (fields not named are ignored)."""
    fields, required = REQUESTS[procedure]
    return {
        "type": "object",
        "properties": {name: FIELD_SCHEMAS[name] for name in fields},
        "required": list(required),
    }


# --- fnc_id -----------------------------------------------------------------


@dataclass(frozen=True)
class FncId:
    """A parsed function call id ``<ppid>:<cpid>:<time>:<random>``."""

    ppid: int
    cpid: int
    time: str
    random: str

    @classmethod
    def new(cls, ppid: int, cpid: int, started: float) -> FncId:
        """Make the id of a call started at ``started`` (Unix time) in process ``cpid``."""
        return cls(ppid, cpid, f"{started:.6f}", os.urandom(8).hex())

    @classmethod
    def parse(cls, text: str) -> FncId:
        """Parse an fnc_id; raises :class:`BadRequest` if it does not match the format."""
        if not isinstance(text, str) or not FNC_ID_RE.fullmatch(text):
            raise BadRequest(
                f"malformed fnc_id {shown(text)}: expected <ppid>:<cpid>:<time with 6 decimals>:"
                "<16 lowercase hex digits>"
            )
        ppid, cpid, time, random = text.split(":")
        return cls(int(ppid), int(cpid), time, random)

    def __str__(self) -> str:
        return f"{self.ppid}:{self.cpid}:{self.time}:{self.random}"


# --- the call state object --------------------------------------------------


@dataclass
class CallState:
    """What StartFunction, WaitForFunction and AbortFunction answer."""

    fnc_id: str
    finished: bool
    result: Any = None
    error: dict[str, Any] | None = None
    #: (1.1) the latest progress report ``{"fraction", "message", "at"}``, or None
    progress: dict[str, Any] | None = None
    #: (1.1) the position just past the call's output so far
    output_next: int = 0
    #: (1.1) with WaitForFunction's ``output_from``: ``{"from", "next", "skipped", "events"}``
    output: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The state as the JSON object the contract names."""
        wire = {
            "fnc_id": self.fnc_id,
            "finished": self.finished,
            "result": self.result,
            "error": self.error,
            "progress": self.progress,
            "output_next": self.output_next,
        }
        if self.output is not None:
            wire["output"] = self.output
        return wire

    @classmethod
    def from_wire(cls, body: Any) -> CallState:
        """Read a call state answer; raises ``ValueError`` saying what is wrong if it is not
        one the contract allows (a field of the wrong type, shape or range)."""
        if not isinstance(body, dict):
            raise ValueError("call state is not a JSON object")
        fnc_id, finished = body.get("fnc_id"), body.get("finished")
        if not isinstance(fnc_id, str) or not FNC_ID_RE.fullmatch(fnc_id):
            raise ValueError(
                f"call state fnc_id {shown(fnc_id)} is not <ppid>:<cpid>:<time>:<random>"
            )
        if not isinstance(finished, bool):
            raise ValueError(f"call state finished {shown(finished)} is not a boolean")
        output = body.get("output")
        if output is not None and not is_output(output):
            raise ValueError(BAD_OUTPUT)
        error = checked_error(body.get("error"))
        progress = checked_progress(body.get("progress"))
        output_next = checked_output_next(body.get("output_next", 0))
        return cls(fnc_id, finished, body.get("result"), error, progress, output_next, output)

    @property
    def ok(self) -> bool:
        """True once the call finished without error."""
        return self.finished and self.error is None


# --- requests ---------------------------------------------------------------


@dataclass(frozen=True)
class StartFunctionRequest:
    """A parsed StartFunction request."""

    fn_name: str
    timeout: float
    fn_args: dict[str, Any] = field(default_factory=dict)
    abort_after: float | None = None
    request_id: str | None = None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> StartFunctionRequest:
        fn_name = body.get("fn_name")
        if not isinstance(fn_name, str) or not fn_name:
            raise BadRequest("field 'fn_name' is required and must be a non-empty string")
        fn_args = body.get("fn_args", {})
        if fn_args is None:
            fn_args = {}
        if not isinstance(fn_args, dict):
            raise BadRequest("field 'fn_args' must be a JSON object of named arguments")
        return cls(
            fn_name=fn_name,
            timeout=parse_timeout(body),
            fn_args=fn_args,
            abort_after=_parse_abort_after(body.get("abort_after")),
            request_id=_parse_request_id(body.get("request_id")),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "fn_name": self.fn_name,
            "fn_args": self.fn_args,
            "timeout": self.timeout,
            "abort_after": self.abort_after,
            "request_id": self.request_id,
        }


@dataclass(frozen=True)
class WaitForFunctionRequest:
    """A parsed WaitForFunction request."""

    fnc_id: FncId
    timeout: float
    #: (1.1) also end the wait at output or progress past this position, and answer it
    output_from: int | None = None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> WaitForFunctionRequest:
        return cls(
            fnc_id=parse_fnc_id_field(body),
            timeout=parse_timeout(body),
            output_from=_parse_position(body.get("output_from")),
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"fnc_id": str(self.fnc_id), "timeout": self.timeout}
        if self.output_from is not None:
            wire["output_from"] = self.output_from
        return wire


@dataclass(frozen=True)
class AbortFunctionRequest:
    """A parsed AbortFunction request."""

    fnc_id: FncId

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> AbortFunctionRequest:
        return cls(fnc_id=parse_fnc_id_field(body))

    def to_wire(self) -> dict[str, Any]:
        return {"fnc_id": str(self.fnc_id)}


def parse_fnc_id_field(body: dict[str, Any]) -> FncId:
    """The request's required ``fnc_id`` field, parsed."""
    if "fnc_id" not in body:
        raise BadRequest("field 'fnc_id' is required")
    return FncId.parse(body["fnc_id"])


def parse_timeout(body: dict[str, Any]) -> float:
    """The request's required ``timeout``: a finite number of seconds, >= 0."""
    if "timeout" not in body:
        raise BadRequest("field 'timeout' is required: seconds to wait, 0 for fire-and-forget")
    value = _finite_number("timeout", body["timeout"])
    if value < 0:
        raise BadRequest(f"field 'timeout' must be >= 0 seconds, got {body['timeout']!r}")
    return value


def _parse_abort_after(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _finite_number("abort_after", value)
    if seconds <= 0:
        raise BadRequest(f"field 'abort_after' must be > 0 seconds or null, got {value!r}")
    return seconds


def _parse_position(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 2.0 is an integer to JSON Schema, and so here
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(
            f"field 'output_from' must be an integer >= 0 (a position from an earlier "
            f"answer, or 0 for the start) or null, got {shown(value)}"
        )
    return value


def _parse_request_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not REQUEST_ID_RE.fullmatch(value):
        raise BadRequest(
            f"malformed request_id {shown(value)}: 1 to 128 characters of [A-Za-z0-9._:-]"
        )
    return value


def _finite_number(name: str, value: Any) -> float:
    # bool is an int in Python but never a number on the wire.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"field {name!r} must be a number of seconds, got {shown(value)}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise BadRequest(f"field {name!r} must be finite, got {value!r}")
    return seconds


def parse_body(raw: bytes) -> dict[str, Any]:
    """Decode a request body: one JSON object, UTF-8; an empty body means ``{}``.

    An integer beyond 64 bits is refused rather than read as an inexact float."""
    if not raw.strip():
        return {}
    try:
        body = loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 JSON: {exc}") from exc
    if _LONG_NUMBER.search(raw):  # only then can an integer be too large: look closer
        json.loads(raw, parse_int=_int64)
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body
