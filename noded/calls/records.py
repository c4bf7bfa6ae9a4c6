"""The journal's records: how a call is written, and how a record read back is checked.

* ``{"op": "start", fnc_id, fn_name, pid, pid_birth, started, cgroup, owner, request_id,
  digest}`` when a call starts;
* ``{"op": "finish", ...the whole call state...}`` before its result is announced;
* ``{"op": "lost", fnc_id, fn_name, owner, request_id, digest, lost_at, why}`` for a call
  an earlier daemon started and never saw finish, kept while its request_id must still
  name it (:class:`noded.calls.lost.LostCall`);
* ``{"op": "forget", fnc_id}`` when a result (or a lost call) expires or is dropped.

A record read back is taken only if every field the daemon relies on is there with its
type: a damaged but well-formed line (no ``pid``, ``finished_at: "soon"``, a digest that
is not hex) is refused with a reason, like a line that is not JSON.  A start record is
also refused unless its ``pid`` is its fnc_id's cpid (> 1), its ``pid_birth`` is
``"<boot id>:<ticks>"`` and its ``cgroup`` is one this daemon would have made for that
pid: the record is what a new daemon signals, so nothing else may be.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from noded.calls.table import FunctionCall
from rpc_client.protocol import FNC_ID_RE, FncId

_NUMBER = (int, float)


def start_record(call: FunctionCall) -> dict[str, Any]:
    return {
        "op": "start",
        "fnc_id": call.fnc_id,
        "fn_name": call.fn_name,
        "pid": call.pid,
        "pid_birth": call.pid_birth,
        "started": call.started,
        "cgroup": call.cgroup,
        "owner": call.owner,
        "request_id": call.request_id,
        "digest": call.digest.hex(),
    }


def finish_record(call: FunctionCall) -> dict[str, Any]:
    return {
        "op": "finish", "fnc_id": call.fnc_id, "fn_name": call.fn_name, "pid": call.pid,
        "started": call.started, "finished_at": call.finished_at,
        "request_id": call.request_id, "digest": call.digest.hex(),
        "result": call.result, "error": call.error, "progress": call.progress,
        "owner": call.owner,
    }  # fmt: skip


def forget_record(fnc_id: str) -> dict[str, Any]:
    return {"op": "forget", "fnc_id": fnc_id}


def problem_of(record: Any) -> str | None:
    """Why a record read back cannot be taken, or None if it can."""
    if not isinstance(record, dict):
        return "not an object"
    op, fnc_id = record.get("op"), record.get("fnc_id")
    if op not in _FIELDS:
        return f"unknown op {str(op)[:20]!r}"
    if not isinstance(fnc_id, str) or not FNC_ID_RE.fullmatch(fnc_id):
        return "no valid fnc_id"
    problem = _field_problem(record, _FIELDS[op])
    if problem is None and op == "start":
        return _start_problem(record, FncId.parse(fnc_id))
    return problem


def _start_problem(record: dict[str, Any], fnc_id: FncId) -> str | None:
    """Why a start record must not be acted on: what it names is not its call's."""
    pid, birth, cgroup = record["pid"], record["pid_birth"], record.get("cgroup")
    if pid != fnc_id.cpid or pid <= 1:
        return f"field 'pid' ({pid}) is not its fnc_id's process"
    if birth is not None and not _BIRTH_RE.fullmatch(birth):
        return "field 'pid_birth' is not <boot id>:<start time>"
    if cgroup is not None and not _is_call_cgroup(cgroup, fnc_id):
        return "field 'cgroup' is not the cgroup of its fnc_id's process"
    return None


def _is_call_cgroup(cgroup: Any, fnc_id: FncId) -> bool:
    """True for ``<root>/noded-<daemon pid>/call-<pid>``, as the daemon makes them
    (:class:`noded.process.tree.CgroupTrees`)."""
    if not isinstance(cgroup, str):
        return False
    path = PurePosixPath(cgroup)
    return (
        path.is_absolute()
        and ".." not in path.parts
        and path.name == f"call-{fnc_id.cpid}"
        and path.parent.name == f"noded-{fnc_id.ppid}"
    )


#: a process birth, as noded.process.leftovers.process_birth writes it
_BIRTH_RE = re.compile(r"[0-9A-Za-z-]{1,64}:[0-9]{1,20}")
_OPTIONAL_STR = (str, type(None))
_START_FIELDS: dict[str, Any] = {
    "pid": int, "started": _NUMBER, "pid_birth": _OPTIONAL_STR, "fn_name": str,
    "request_id": _OPTIONAL_STR, "digest": _OPTIONAL_STR, "owner": _OPTIONAL_STR,
}  # fmt: skip
_FINISH_FIELDS: dict[str, Any] = {
    "pid": int, "started": _NUMBER, "finished_at": _NUMBER, "fn_name": str,
    "digest": str, "request_id": (str, type(None)), "error": (dict, type(None)),
}  # fmt: skip
_LOST_FIELDS: dict[str, Any] = {
    "fn_name": str, "request_id": str, "digest": str, "owner": _OPTIONAL_STR,
    "lost_at": _NUMBER, "why": str,
}  # fmt: skip
_FIELDS: dict[str, dict[str, Any]] = {
    "start": _START_FIELDS, "finish": _FINISH_FIELDS, "lost": _LOST_FIELDS, "forget": {},
}  # fmt: skip


def _field_problem(record: dict[str, Any], fields: dict[str, Any]) -> str | None:
    for name, kind in fields.items():
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"field {name!r} missing or of the wrong type"
    digest = record.get("digest")
    if isinstance(digest, str):
        try:
            bytes.fromhex(digest)
        except ValueError:
            return "field 'digest' is not hex"
    error = record.get("error")
    if isinstance(error, dict) and not isinstance(error.get("type"), str):
        return "field 'error' has no type"
    return None


def call_from(record: dict[str, Any]) -> FunctionCall:
    """The finished call of a checked finish record."""
    call = FunctionCall(
        fnc_id=record["fnc_id"],
        fn_name=record["fn_name"],
        pid=record["pid"],
        started=float(record["started"]),
        request_id=record["request_id"],
        digest=bytes.fromhex(record["digest"]),
    )
    owner = record.get("owner")
    call.owner = owner if isinstance(owner, str) else None
    call.finish(record.get("result"), record["error"])
    progress = record.get("progress")
    call.progress = progress if isinstance(progress, dict) else None
    call.finished_at = float(record["finished_at"])
    return call
