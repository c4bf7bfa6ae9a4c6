"""The wire of jobs (part 2, "SubmitJob" to "What a job guarantees"): the procedure names,
the requests (parsed and checked here, raising :class:`BadRequest`), the job states and
outcomes.  One copy, for ganeti-masterd and its clients alike; the rest of part 2 is in
:mod:`rpc_client.master_protocol`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from rpc_client.errors import BadRequest
from rpc_client.master_protocol import INT32_MAX, _integer, _string, _strings
from rpc_client.protocol import (
    _parse_abort_after,
    _parse_request_id,
    parse_timeout,
    shown,
)

SUBMIT_JOB: Final = "SubmitJob"
WAIT_FOR_JOB: Final = "WaitForJob"
ABORT_JOB: Final = "AbortJob"
LIST_JOBS: Final = "ListJobs"

JOB_STATES: Final = ("queued", "running", "finished", "aborted")
#: a job's ``counts``: the outcomes, then the nodes not ended yet
COUNTS: Final = ("ok", "failed", "timed_out", "unreachable", "skipped", "running", "pending")
DEFAULT_JOB_TIMEOUT_S: Final = 60.0

#: each job procedure's request fields (for GET /openapi.json)
JOB_REQUESTS: Final[dict[str, tuple[str, ...]]] = {
    SUBMIT_JOB: ("fn_name", "fn_args", "nodes", "labels", "timeout", "abort_after", "window",
                 "canary", "max_failures", "request_id"),
    WAIT_FOR_JOB: ("job_id", "timeout", "results_from"),
    ABORT_JOB: ("job_id", "calls"),
    LIST_JOBS: ("limit",),
}  # fmt: skip
#: the fields of JOB_REQUESTS that may be left out
JOB_OPTIONAL: Final = frozenset({"fn_args", "nodes", "labels", "timeout", "abort_after",
                                 "window", "canary", "max_failures", "request_id",
                                 "results_from", "calls", "limit"})  # fmt: skip


def _optional_integer(body: dict[str, Any], name: str, minimum: int) -> int | None:
    """A job's integer field or None; at most :data:`INT32_MAX` (the stores' columns)."""
    if body.get(name) is None:
        return None
    return _integer(body, name, minimum=minimum, maximum=INT32_MAX)


@dataclass(frozen=True, kw_only=True)
class SubmitJobRequest:
    """A parsed SubmitJob: a function, its nodes (by name, by labels, or all), the
    roll-out, and an idempotency key."""

    fn_name: str
    fn_args: dict[str, Any]
    nodes: tuple[str, ...] | None
    labels: tuple[str, ...] | None
    timeout: float = DEFAULT_JOB_TIMEOUT_S
    abort_after: float | None = None
    window: int | None = None
    canary: int = 0
    max_failures: int | None = None
    request_id: str | None = None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> SubmitJobRequest:
        fn_args = body.get("fn_args")
        fn_args = {} if fn_args is None else fn_args
        if not isinstance(fn_args, dict):
            raise BadRequest(f"field 'fn_args' must be an object or absent, got {shown(fn_args)}")
        timeout = DEFAULT_JOB_TIMEOUT_S
        if body.get("timeout") is not None:
            timeout = parse_timeout(body)
        return cls(
            fn_name=_string(body, "fn_name"),
            fn_args=fn_args,
            nodes=_strings(body, "nodes", nullable=True),
            labels=_strings(body, "labels", nullable=True),
            timeout=timeout,
            abort_after=_parse_abort_after(body.get("abort_after")),
            window=_optional_integer(body, "window", 1),
            canary=_optional_integer(body, "canary", 0) or 0,
            max_failures=_optional_integer(body, "max_failures", 0),
            request_id=_parse_request_id(body.get("request_id")),
        )

    def to_wire(self) -> dict[str, Any]:
        body = asdict(self)
        for name in ("nodes", "labels"):
            body[name] = None if body[name] is None else list(body[name])
        return body


@dataclass(frozen=True)
class WaitForJobRequest:
    """A parsed WaitForJob: how long to wait, and the results from a position (or none)."""

    job_id: str
    timeout: float
    results_from: int | None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> WaitForJobRequest:
        return cls(job_id=_string(body, "job_id"), timeout=parse_timeout(body),
                   results_from=_optional_integer(body, "results_from", 0))  # fmt: skip

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AbortJobRequest:
    """A parsed AbortJob: start no further node; with ``calls`` abort the running calls."""

    job_id: str
    calls: bool

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> AbortJobRequest:
        calls = body.get("calls", False)
        if not isinstance(calls, bool):
            raise BadRequest(f"field 'calls' must be true or false, got {shown(calls)}")
        return cls(job_id=_string(body, "job_id"), calls=calls)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ListJobsRequest:
    """A parsed ListJobs: how many of the newest jobs (None: the server's default)."""

    limit: int | None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> ListJobsRequest:
        return cls(limit=_optional_integer(body, "limit", 1))

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)
