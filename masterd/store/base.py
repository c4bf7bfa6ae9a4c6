"""The store's interface: one small ``Protocol``, and the records that cross it.

What masterd keeps (PROTOCOL.md part 2, "The store"): the nodes that registered, the
events (from nodes, and its own), and the masterd instances.  Jobs and their per-node
records come next (issue 31): they will be more methods here, on the same rules.

The rules every backend keeps:

- A method that writes returns once its transaction is committed *durably* (fsynced):
  the answer a handler gives after it may be relied on after a crash.
- Failures are the wire's errors, mapped in the backend in one place:
  :class:`~rpc_client.errors.InsufficientStorage` when a write finds the disk full or
  failing (reads go on), :class:`~rpc_client.errors.StoreUnavailable` when the store
  cannot be reached.  Nothing is half-written: a failed method changed nothing.
- SQL lives in the backend modules only; the schema in numbered migration files.

Time: ``at``, ``registered`` and ``last_seen`` are Unix times (seconds).

What comes next, on the same rules (a sketch, so that the interface grows and does not
change):

- jobs (issue 31): ``add_job`` (idempotent on ``request_id``, in the transaction that
  checks it), ``record_start(job_id, node, request_id, owner)`` *before* the start is sent,
  ``record_result``, ``unfinished_jobs(owner)`` for a restarted masterd, ``expire_jobs``;
  starts that come together share one commit, as Reports do.
- several masters (issue 32): ``renew_instance`` and ``live_instances`` by the database's
  clock (Register's ``masters``); ``claim_job(job_id, owner, lease_s)`` as a conditional
  update; ``record_start`` checks the owner's lease in its own transaction (a fencing
  token, not a clock hope); a way to be woken by another master's commits
  (LISTEN/NOTIFY), which the SQLite backend, with one masterd, does not need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from masterd.store.jobs import JobHead, JobProgress, JobRecord, JobResult, NewResult


@dataclass(frozen=True)
class NodeRecord:
    """A registered node, as stored."""

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
    registered: float
    last_seen: float


@dataclass(frozen=True)
class NewEvent:
    """An event to store: from a node (``seq`` set) or masterd's own (``seq`` None)."""

    node_uuid: str | None
    node: str | None
    type: str
    at: float
    data: Any
    fnc_id: str | None = None
    spool: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as WaitForEvents answers it; ``id`` starts at 1 and only grows."""

    id: int
    node: str | None
    seq: int | None
    type: str
    at: float
    data: Any
    fnc_id: str | None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "node": self.node, "seq": self.seq, "type": self.type,
                "at": self.at, "data": self.data, "fnc_id": self.fnc_id}  # fmt: skip


@dataclass(frozen=True)
class Reported:
    """What storing a Report's events did: the spool's ``acked`` and the new events."""

    acked: int
    stored: list[StoredEvent]


class Store(Protocol):
    """Where masterd keeps what must outlive it.  One per daemon; opened, used, closed."""

    #: ``sqlite:///...``, without secrets, for logs and messages
    url: str
    #: several masterd may use it at once (PostgreSQL): what others store (nodes,
    #: ``last_seen``, events) must be read back
    shared: bool

    async def open(self) -> None:
        """Take the store (SQLite: its lock), apply the migrations not yet applied."""

    async def close(self) -> None:
        """Flush and let go; nothing is lost by not calling it (a crash)."""

    async def schema_version(self) -> int:
        """The highest migration applied."""

    async def add_instance(self, instance: str, advertise: str, pid: int, at: float) -> None:
        """Record a masterd process at its start (the ``owner`` of jobs, later)."""

    async def renew_instance(self, instance: str) -> None:
        """Mark a masterd live now, by the store's clock (PostgreSQL: ``now()``)."""

    async def live_instances(self, within_s: float) -> list[str]:
        """The ``advertise`` of each masterd renewed within ``within_s``, oldest first
        (Register's ``masters``)."""

    def subscribe(self, on_events: Callable[[int], None]) -> None:
        """Have ``on_events(newest_id)`` called when any masterd stored events (a shared
        store; SQLite, with one masterd, has no one else to hear from)."""

    def subscribe_jobs(self, on_job: Callable[[str], None]) -> None:
        """Have ``on_job(job_id)`` called when any masterd stored a job's node end or
        state (a shared store; ``""``: any job, after the listening connection was back,
        as a notification may have been lost meanwhile)."""

    async def load_nodes(
        self, *, uuid: str | None = None, name: str | None = None
    ) -> list[NodeRecord]:
        """Every registered node; with ``uuid`` or ``name``, only the nodes that have
        that uuid or that name (at most two: one Register's check, without reading a
        whole fleet)."""

    async def save_node(
        self, node: NodeRecord, replaces: str | None, events: list[NewEvent]
    ) -> list[StoredEvent]:
        """Insert or update ``node`` (and delete the node ``replaces``, a dead one whose
        name it takes) with ``events``, in one durable transaction."""

    async def touch_nodes(self, last_seen: dict[str, float]) -> None:
        """Write the nodes' ``last_seen`` (batched heartbeats; need not be fsynced)."""

    async def add_reported(self, node_uuid: str, node: str, spool: str,
                           events: list[NewEvent]) -> Reported:  # fmt: skip
        """Store a Report's events, each ``(node_uuid, spool, seq)`` once, durably."""

    async def events_after(self, from_id: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with ``id >= from_id``, in id order."""

    async def last_event_id(self) -> int:
        """The highest event id (0: none yet)."""

    # --- jobs (issue 31; the records in masterd.store.jobs) ------------------------

    async def add_job(self, job: JobRecord) -> JobRecord:
        """Store a new job with its nodes, durably; if a job with its ``request_id`` is
        stored, that one instead (checked in the same transaction: of two racing
        submits, one makes the job)."""

    async def get_job(self, job_id: str) -> JobRecord | None:
        """A job, or None."""

    async def get_job_head(self, job_id: str) -> JobHead | None:
        """A job's own row without its nodes (one row read, whatever the job's size), or
        None."""

    async def list_jobs(self, limit: int) -> list[JobRecord]:
        """The newest ``limit`` jobs, newest first."""

    async def claim_jobs(self, owner: str) -> list[JobRecord]:
        """Make ``owner`` the owner of every unfinished job and return them (at start: one
        masterd per SQLite file; issue 32 makes this a lease)."""

    async def set_job_state(self, job_id: str, state: str, at: float | None = None) -> None:
        """``running``, or an end (``finished``, ``aborted``) at ``at``; durably."""

    async def abort_job(self, job_id: str, calls: bool) -> None:
        """Record AbortJob (``calls``: abort the running calls too), durably."""

    async def job_progress(self, job_id: str) -> JobProgress:
        """What was asked of, and how ended, each node of a job (for a resume)."""

    async def job_results(self, job_id: str, from_seq: int, limit: int) -> list[JobResult]:
        """Up to ``limit`` results with ``seq >= from_seq``, in order."""

    async def job_counts(self, job_id: str) -> dict[str, int]:
        """The job's nodes by outcome, and ``running`` (asked, not ended), ``pending``."""

    async def record_asked(self, job_id: str, node: str, request_id: str, at: float) -> None:
        """Returns once the node's request_id is committed: only then is it sent.  Records
        that come together share one commit."""

    async def record_started(self, job_id: str, node: str, fnc_id: str) -> None:
        """The fnc_id the node named (a shortcut for a resume; group-committed)."""

    async def record_result(self, job_id: str, result: NewResult) -> JobResult | None:
        """A node's end at the job's next ``seq``, durably; None if it had one (kept)."""

    async def expire_events(self, stored_before: float, limit: int) -> int:
        """Delete at most ``limit`` of the oldest events stored before ``stored_before``
        (Unix time), in one transaction; how many."""

    async def expire_jobs(self, ended_before: float) -> int:
        """Delete the jobs that ended before then, with their records; how many."""
