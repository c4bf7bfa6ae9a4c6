"""The wire of part 2 (1.2): the procedures of ``ganeti-masterd`` and their requests.

The same transport, codec and error body as part 1 (:mod:`rpc_client.protocol`); this
module adds the procedure names, the request shapes (parsed and checked here, raising
:class:`BadRequest`) and the master's default port.  One copy, for the daemon, the node
and the operator's client alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from rpc_client.errors import BadRequest
from rpc_client.protocol import parse_timeout, shown

MASTER_PORT: Final = 1812

REGISTER: Final = "Register"
HEARTBEAT: Final = "Heartbeat"
REPORT: Final = "Report"
LIST_NODES: Final = "ListNodes"
WAIT_FOR_EVENTS: Final = "WaitForEvents"
CALL_MASTER: Final = "CallMaster"

#: node states in ListNodes
ALIVE: Final = "alive"
MISSING: Final = "missing"
UNKNOWN: Final = "unknown"

#: events masterd records itself (``seq`` null)
NODE_REGISTERED: Final = "node.registered"
NODE_RESTARTED: Final = "node.restarted"


def _string(body: dict[str, Any], name: str, *, max_length: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise BadRequest(
            f"field {name!r} is required and must be a non-empty string of at most "
            f"{max_length} characters, got {shown(value)}"
        )
    return value


#: the largest integers the stores hold: a 32-bit column (PostgreSQL's INTEGER) and a
#: 64-bit one (BIGINT, and every SQLite integer); a field is bounded at parse by the
#: column it goes to, so that a value out of range is 400, never the store's error
INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1


def _integer(body: dict[str, Any], name: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """An integer field, ``minimum..maximum``; a JSON number with a fraction part or an
    exponent (``1.0``, ``1e3``) is not one."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadRequest(f"field {name!r} must be an integer from {minimum} to {maximum}, "
                         f"got {shown(value)}")  # fmt: skip
    return value


def _strings(body: dict[str, Any], name: str, *, nullable: bool = False) -> tuple[str, ...] | None:
    value = body.get(name)
    if value is None and (nullable or name not in body):
        return None if nullable else ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        kind = "an array of non-empty strings" + (" or null" if nullable else "")
        raise BadRequest(f"field {name!r} must be {kind}, got {shown(value)}")
    return tuple(value)


@dataclass(frozen=True)
class RegisterRequest:
    """A parsed Register: who the node is, where it listens, what it runs."""

    uuid: str
    name: str
    address: str
    port: int
    boot_id: str
    instance: str
    pid: int
    version: str
    labels: tuple[str, ...]
    functions: tuple[str, ...]

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> RegisterRequest:
        port = _integer(body, "port", minimum=1)
        if port > 65535:
            raise BadRequest(f"field 'port' must be 1..65535, got {port}")
        return cls(
            uuid=_string(body, "uuid"),
            name=_string(body, "name"),
            address=_string(body, "address"),
            port=port,
            boot_id=_string(body, "boot_id"),
            instance=_string(body, "instance"),
            pid=_integer(body, "pid", minimum=1, maximum=INT32_MAX),
            version=_string(body, "version"),
            labels=_strings(body, "labels") or (),
            functions=_strings(body, "functions") or (),
        )

    def to_wire(self) -> dict[str, Any]:
        return {**self.__dict__, "labels": list(self.labels), "functions": list(self.functions)}


@dataclass(frozen=True)
class HeartbeatRequest:
    """A parsed Heartbeat."""

    uuid: str
    instance: str
    running: int

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> HeartbeatRequest:
        return cls(
            uuid=_string(body, "uuid"),
            instance=_string(body, "instance"),
            running=_integer(body, "running", maximum=INT32_MAX),
        )

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class NodeEvent:
    """One event as a node reports it."""

    seq: int
    type: str
    at: float
    data: Any
    fnc_id: str | None

    @classmethod
    def from_wire(cls, item: Any, index: int) -> NodeEvent:
        if not isinstance(item, dict):
            raise BadRequest(f"events[{index}] must be an object, got {shown(item)}")
        at = item.get("at")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise BadRequest(f"events[{index}].at must be a finite number, got {shown(at)}")
        fnc_id = item.get("fnc_id")
        if fnc_id is not None and not isinstance(fnc_id, str):
            raise BadRequest(f"events[{index}].fnc_id must be a string or null")
        return cls(
            seq=_integer(item, "seq"),
            type=_string(item, "type", max_length=200),
            at=float(at),
            data=item.get("data"),
            fnc_id=fnc_id,
        )

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ReportRequest:
    """A parsed Report: events of one spool of one node."""

    uuid: str
    spool: str
    events: tuple[NodeEvent, ...]

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> ReportRequest:
        events = body.get("events")
        if not isinstance(events, list):
            raise BadRequest(f"field 'events' must be an array of events, got {shown(events)}")
        return cls(
            uuid=_string(body, "uuid"),
            spool=_string(body, "spool"),
            events=tuple(NodeEvent.from_wire(item, n) for n, item in enumerate(events)),
        )

    def to_wire(self) -> dict[str, Any]:
        events = [event.to_wire() for event in self.events]
        return {"uuid": self.uuid, "spool": self.spool, "events": events}


@dataclass(frozen=True)
class WaitForEventsRequest:
    """A parsed WaitForEvents: from a position (None: only new ones), with filters."""

    from_id: int | None
    timeout: float
    types: tuple[str, ...] | None
    nodes: tuple[str, ...] | None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> WaitForEventsRequest:
        if "from" not in body:
            raise BadRequest("field 'from' is required: a position, 0 for the start, or null")
        return cls(
            from_id=None if body["from"] is None else _integer(body, "from"),
            timeout=parse_timeout(body),
            types=_strings(body, "types", nullable=True),
            nodes=_strings(body, "nodes", nullable=True),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "from": self.from_id,
            "timeout": self.timeout,
            "types": None if self.types is None else list(self.types),
            "nodes": None if self.nodes is None else list(self.nodes),
        }


@dataclass(frozen=True)
class CallMasterRequest:
    """A parsed CallMaster: a master command for the node with that uuid."""

    uuid: str
    command: str
    args: dict[str, Any]
    timeout: float

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> CallMasterRequest:
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise BadRequest(f"field 'args' must be an object, got {shown(args)}")
        return cls(
            uuid=_string(body, "uuid"),
            command=_string(body, "command"),
            args=args,
            timeout=parse_timeout(body),
        )

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


#: each part-2 procedure's request fields (for GET /openapi.json and the docs)
MASTER_REQUESTS: Final[dict[str, tuple[str, ...]]] = {
    REGISTER: ("uuid", "name", "address", "port", "boot_id", "instance", "pid", "version",
               "labels", "functions"),
    HEARTBEAT: ("uuid", "instance", "running"),
    REPORT: ("uuid", "spool", "events"),
    LIST_NODES: (),
    WAIT_FOR_EVENTS: ("from", "timeout", "types", "nodes"),
    CALL_MASTER: ("uuid", "command", "args", "timeout"),
}  # fmt: skip
