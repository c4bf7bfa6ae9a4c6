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

from dataclasses import dataclass
from typing import Any, Protocol


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

    async def open(self) -> None:
        """Take the store (SQLite: its lock), apply the migrations not yet applied."""

    async def close(self) -> None:
        """Flush and let go; nothing is lost by not calling it (a crash)."""

    async def schema_version(self) -> int:
        """The highest migration applied."""

    async def add_instance(self, instance: str, advertise: str, pid: int, at: float) -> None:
        """Record a masterd process at its start (the ``owner`` of jobs, later)."""

    async def load_nodes(self) -> list[NodeRecord]:
        """Every registered node."""

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
