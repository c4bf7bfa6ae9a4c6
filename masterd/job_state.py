"""A job as ganeti-masterd answers it (SubmitJob, WaitForJob, AbortJob, ListJobs), for
:class:`masterd.master_client.MasterClient` and ``rpc-cli --master ... job``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rpc_client.job_protocol import COUNTS

#: a job's states that are its end
ENDED = ("finished", "aborted")


@dataclass(frozen=True)
class JobResultItem:
    """How one node of a job ended: ``outcome`` (``ok``, ``failed``, ``timed_out``,
    ``unreachable``, ``skipped``), the call's ``fnc_id`` (None if it never started), the
    function's ``result``, or ``error`` (``{"type", "message", ...}``)."""

    node: str
    outcome: str
    fnc_id: str | None
    result: Any
    error: dict[str, Any] | None

    @classmethod
    def from_wire(cls, item: Any) -> JobResultItem:
        if not isinstance(item, dict) or not isinstance(item.get("node"), str):
            raise ValueError(f"a job result without a node: {item!r:.200}")
        if not isinstance(item.get("outcome"), str):
            raise ValueError(f"the result of {item['node']!r} has no outcome")
        return cls(item["node"], item["outcome"], item.get("fnc_id"), item.get("result"),
                   item.get("error"))  # fmt: skip

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class JobState:
    """A job: its state, owner, counts by outcome, and the results of one page
    (``results_next`` is where the next page begins; None when none was asked for)."""

    job_id: str
    state: str
    fn_name: str
    submitted: float
    owner: str | None
    counts: dict[str, int]
    results: list[JobResultItem] = field(default_factory=list)
    results_next: int | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @classmethod
    def from_wire(cls, body: Any) -> JobState:
        if not isinstance(body, dict) or not isinstance(body.get("job_id"), str):
            raise ValueError(f"a job without a job_id: {body!r:.200}")
        if body.get("state") not in ("queued", "running", *ENDED):
            raise ValueError(f"job {body['job_id']} has no known state: {body.get('state')!r}")
        counts = body.get("counts") or {}
        results = body.get("results")
        items = results.get("items") if isinstance(results, dict) else None
        return cls(
            job_id=body["job_id"], state=body["state"], fn_name=str(body.get("fn_name")),
            submitted=float(body.get("submitted") or 0), owner=body.get("owner"),
            counts={name: int(counts.get(name, 0)) for name in COUNTS},
            results=[JobResultItem.from_wire(item) for item in items or ()],
            results_next=results.get("next") if isinstance(results, dict) else None,
        )  # fmt: skip

    def to_wire(self) -> dict[str, Any]:
        body = {key: value for key, value in self.__dict__.items() if key != "results"}
        body["results"] = [item.to_wire() for item in self.results]
        return body
