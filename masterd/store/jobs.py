"""The records of jobs as they cross the store's interface (:mod:`masterd.store.base`).

A job is what SubmitJob asked (:class:`JobSpec`, its nodes resolved to addresses at
submission, so that a resumed job calls the same nodes), its state and owner
(:class:`JobRecord`), and per node what was asked and how it ended
(:class:`JobProgress`, :class:`JobResult`).  A result's ``seq`` is its position in the
job's results (0, 1, ...), what WaitForJob's ``results_from`` counts.

:class:`JobNotHeld` is the one error of the jobs' own: a kind of the wire's
``StoreUnavailable`` (503 to any request that met it), and to a job's run the end of
that run (not an outage to wait through).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rpc_client.errors import StoreUnavailable

QUEUED, RUNNING, FINISHED, ABORTED = "queued", "running", "finished", "aborted"
#: AbortJob: start no further node; or abort the running calls too
ABORT_NODES, ABORT_CALLS = "nodes", "calls"
#: a shared store's job notice of an AbortJob stored (the job's id follows): the job's
#: owner, whichever master took the AbortJob, reads the job's abort and acts on it
ABORT_NOTICE = "abort:"


class JobNotHeld(StoreUnavailable):
    """Raised when a node's start is to be recorded for a job this masterd no longer
    holds (its row lapsed past the lease; another master may have taken the job): no
    further node may be started here."""


@dataclass(frozen=True)
class JobNode:
    """A node of a job, where it was when the job was submitted."""

    name: str
    address: str
    port: int


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What a job runs, on which nodes (in order), and how it rolls out."""

    fn_name: str
    fn_args: dict[str, Any]
    nodes: tuple[JobNode, ...]
    timeout_s: float
    abort_after: float | None = None
    window: int | None = None
    canary: int = 0
    max_failures: int | None = None


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """A stored job."""

    id: str
    spec: JobSpec
    request: dict[str, Any]
    request_id: str | None
    state: str
    owner: str | None
    abort: str | None
    submitted: float
    ended: float | None = None

    def head(self) -> JobHead:
        return JobHead(id=self.id, fn_name=self.spec.fn_name, state=self.state,
                       owner=self.owner, abort=self.abort, submitted=self.submitted,
                       ended=self.ended)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class JobHead:
    """A job's own row without its nodes: what WaitForJob answers besides the results and
    counts (read in one row, whatever the job's size)."""

    id: str
    fn_name: str
    state: str
    owner: str | None
    abort: str | None
    submitted: float
    ended: float | None = None


@dataclass(frozen=True)
class JobResult:
    """How one node of a job ended."""

    seq: int
    node: str
    outcome: str
    fnc_id: str | None
    result: Any
    error: dict[str, Any] | None

    def to_wire(self) -> dict[str, Any]:
        return {"node": self.node, "outcome": self.outcome, "fnc_id": self.fnc_id,
                "result": self.result, "error": self.error}  # fmt: skip


@dataclass(frozen=True)
class NewResult:
    """A node's end, to store (its ``seq`` is given by the store)."""

    node: str
    outcome: str
    fnc_id: str | None
    result: Any
    error: dict[str, Any] | None


@dataclass
class JobProgress:
    """What the store says was done for a job's nodes: what a resumed job goes on from."""

    request_ids: dict[str, str] = field(default_factory=dict)
    #: when each node asked was recorded (Unix time): its timeout counts from then
    asked: dict[str, float] = field(default_factory=dict)
    fnc_ids: dict[str, str] = field(default_factory=dict)
    results: dict[str, JobResult] = field(default_factory=dict)
