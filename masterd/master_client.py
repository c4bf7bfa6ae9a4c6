"""``MasterClient``: an operator's async client of one ganeti-masterd (PROTOCOL.md part 2).

``nodes()`` is ListNodes; ``events()`` one WaitForEvents; ``follow_events()`` an async
iterator over the events from a position on, long-polling for new ones.  Jobs:
``submit_job()``, ``wait_job()``, ``follow_job()`` (each node's result as it comes),
``abort_job()`` and ``jobs()``.  It rides on
the same transport, TLS and error mapping as :class:`rpc_client.client.NodeClient`: a
master that cannot be reached is :class:`NodeUnreachable`, one that answers with the
contract's error body raises that error's class (``StoreUnavailable``, ``BadRequest``,
...), all of them under :class:`RPCError`.  Its blocking twin is
:class:`masterd.blocking.MasterClient`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Unpack

from masterd.job_state import JobResultItem, JobState
from masterd.options import OldRolloutKeywords, Rollout, rollout_of
from rpc_client import job_protocol as jobs_wire
from rpc_client import master_protocol as wire
from rpc_client.client import DEFAULT_TIMEOUTS, ClientTimeouts, NodeClient
from rpc_client.errors import ProtocolError, RPCError
from rpc_client.tls import TLSConfig
from rpc_client.transport import CannotConnect

#: the longest a follower asks the master to wait at once (the master caps it too)
FOLLOW_WAIT_S = 30.0


@dataclass(frozen=True)
class ListedNode:
    """A node of ListNodes: registered (``alive`` or ``missing``), or ``unknown`` (in
    the master's nodes file, never registered: no version, instance nor times)."""

    name: str
    uuid: str | None
    address: str | None
    port: int | None
    labels: tuple[str, ...]
    version: str | None
    boot_id: str | None
    instance: str | None
    state: str
    #: Unix times; None for an unknown node
    last_seen: float | None
    registered: float | None

    @classmethod
    def from_wire(cls, item: Any) -> ListedNode:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"a node without a name: {item!r:.200}")
        if not isinstance(item.get("state"), str):
            raise ValueError(f"node {item['name']!r} has no state")
        return cls(
            name=item["name"], uuid=item.get("uuid"), address=item.get("address"),
            port=item.get("port"), labels=tuple(item.get("labels") or ()),
            version=item.get("version"), boot_id=item.get("boot_id"),
            instance=item.get("instance"), state=item["state"],
            last_seen=_time(item, "last_seen"), registered=_time(item, "registered"),
        )  # fmt: skip


@dataclass(frozen=True)
class MasterEvent:
    """An event the master stored: from a node (``seq`` its spool's), or the master's
    own (``node.registered``, ``node.restarted``: ``seq`` None)."""

    id: int
    node: str
    seq: int | None
    type: str
    #: Unix time at which it happened (the node's clock)
    at: float
    data: Any
    fnc_id: str | None

    @classmethod
    def from_wire(cls, item: Any) -> MasterEvent:
        if not isinstance(item, dict) or not _is_int(item.get("id")):
            raise ValueError(f"an event without an integer id: {item!r:.200}")
        if not isinstance(item.get("type"), str) or _time(item, "at") is None:
            raise ValueError(f"event {item['id']} lacks its type or time")
        return cls(
            id=item["id"], node=str(item.get("node")), seq=item.get("seq"),
            type=item["type"], at=float(item["at"]), data=item.get("data"),
            fnc_id=item.get("fnc_id"),
        )  # fmt: skip

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EventPage:
    """One WaitForEvents answer: its events, and ``next``, the position to go on from."""

    events: list[MasterEvent]
    next: int


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _time(item: dict[str, Any], name: str) -> float | None:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class SubmitJobKeywords(OldRolloutKeywords, total=False):
    """The keywords of :meth:`MasterClient.submit_job`, for what passes them on
    (:class:`masterd.blocking.MasterClient`)."""

    nodes: Sequence[str] | None
    labels: Sequence[str] | None
    timeout: float
    abort_after: float | None
    rollout: Rollout | None
    request_id: str | None


class _MasterWire(NodeClient):
    """NodeClient's transport and error mapping, with a master's words for "nothing
    listens there", and errors that name it a master (``... (master HOST:PORT)``)."""

    async def call(
        self, procedure: str, body: dict[str, Any], request_timeout_s: float
    ) -> dict[str, Any]:
        try:
            return await super().call(procedure, body, request_timeout_s)
        except RPCError as exc:
            exc.daemon = "master"
            raise

    def malformed(self, message: str) -> ProtocolError:
        """A master's answer that is not the contract's."""
        error = ProtocolError(message, node=self.name)
        error.daemon = "master"
        return error

    def _unreachable(self, exc: CannotConnect) -> str:
        if isinstance(exc.os_error, ConnectionRefusedError):
            return (
                f"nothing listens at {exc.host}:{exc.port} (connection refused): check "
                f"that ganeti-masterd runs there and on which port (--port, "
                f"{wire.MASTER_PORT} by default)"
            )
        return super()._unreachable(exc)

    def _lost_words(self, exc: OSError) -> str:
        return super()._lost_words(exc).replace("the node closed", "the master closed")

    def _lost_hint(self) -> str:
        return super()._lost_hint().replace("node", "master")


class MasterClient:
    """An async client of one ganeti-masterd; use it as an async context manager."""

    def __init__(
        self,
        address: str,
        port: int = wire.MASTER_PORT,
        *,
        timeouts: ClientTimeouts = DEFAULT_TIMEOUTS,
        tls: TLSConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: an operator certificate, and the CA that signed the master's (whose
        certificate must carry ``address``, or ``tls.server_name``)."""
        self._wire = _MasterWire(address, port, timeouts=timeouts, tls=tls,
                                 ssl_context=ssl_context)  # fmt: skip
        self.base_url = self._wire.base_url
        self.name = self._wire.name

    async def __aenter__(self) -> MasterClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection to the master."""
        await self._wire.close()

    async def nodes(self) -> list[ListedNode]:
        """ListNodes: every registered node with its state, then the unknown ones."""
        answer = await self._wire.call(wire.LIST_NODES, {}, self._wire.timeouts.quick_s)
        items = answer.get("nodes")
        if not isinstance(items, list):
            raise self._wire.malformed("ListNodes answer lacks a list 'nodes'")
        return self._parsed(ListedNode.from_wire, items)

    async def events(
        self,
        from_: int | None = 0,
        *,
        types: Sequence[str] | None = None,
        nodes: Sequence[str] | None = None,
        timeout: float = 0.0,
    ) -> EventPage:
        """WaitForEvents: the events with ``id >= from_`` (``None``: only those stored
        from now on) whose type fits one of the shell-style ``types`` and whose node is
        one of ``nodes``; if there is none yet, waits up to ``timeout`` seconds for one.
        An empty page at ``timeout == 0`` means all of them are read."""
        if from_ is not None and (not _is_int(from_) or from_ < 0):
            raise ValueError(f"from_ must be an integer >= 0 or None, got {from_!r}")
        if isinstance(types, str) or isinstance(nodes, str):
            raise TypeError("types and nodes are sequences of strings, not one string")
        if not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        request = wire.WaitForEventsRequest(
            from_, timeout, None if types is None else tuple(types),
            None if nodes is None else tuple(nodes),
        )  # fmt: skip
        answer = await self._wire.call(
            wire.WAIT_FOR_EVENTS, request.to_wire(), timeout + self._wire.timeouts.margin_s
        )
        if not _is_int(answer.get("next")) or not isinstance(answer.get("events"), list):
            raise self._wire.malformed("WaitForEvents answer lacks 'events' or 'next'")
        return EventPage(self._parsed(MasterEvent.from_wire, answer["events"]), answer["next"])

    async def follow_events(
        self,
        from_: int | None = None,
        *,
        types: Sequence[str] | None = None,
        nodes: Sequence[str] | None = None,
        wait_s: float = FOLLOW_WAIT_S,
    ) -> AsyncIterator[MasterEvent]:
        """Every event from ``from_`` on (``None``: from now on), as it is stored, for
        ever: long-polls of up to ``wait_s`` seconds, each going on from the last
        ``next``, so that none is missed or shown twice.  Stop by leaving the loop."""
        position = from_
        while True:
            page = await self.events(position, types=types, nodes=nodes, timeout=wait_s)
            for item in page.events:
                yield item
            position = page.next

    async def submit_job(
        self, fn_name: str, fn_args: dict[str, Any] | None = None, *,
        nodes: Sequence[str] | None = None, labels: Sequence[str] | None = None,
        timeout: float = jobs_wire.DEFAULT_JOB_TIMEOUT_S, abort_after: float | None = None,
        rollout: Rollout | None = None, request_id: str | None = None,
        **old: Unpack[OldRolloutKeywords],
    ) -> JobState:  # fmt: skip
        """SubmitJob: ``fn_name`` on ``nodes`` (by name, in order), or on those carrying
        all ``labels``, or on every node; ``timeout`` per node, from its start; rolled out
        as ``rollout`` says (:class:`masterd.Rollout`; the keywords ``window``, ``canary``
        and ``max_failures`` it replaces still work, with a DeprecationWarning)."""
        rollout = rollout_of("submit_job", rollout, old)
        request = jobs_wire.SubmitJobRequest(
            fn_name=fn_name, fn_args=fn_args or {}, timeout=timeout, abort_after=abort_after,
            nodes=None if nodes is None else tuple(nodes),
            labels=None if labels is None else tuple(labels), window=rollout.window,
            canary=rollout.canary, max_failures=rollout.max_failures, request_id=request_id,
        )  # fmt: skip
        return await self._job(jobs_wire.SUBMIT_JOB, request.to_wire(), 0.0)

    async def wait_job(
        self, job_id: str, *, timeout: float = 0.0, results_from: int | None = None
    ) -> JobState:
        """WaitForJob: the job's state once a result comes past ``results_from`` (with
        those results) or the job ends, else after ``timeout`` seconds."""
        request = jobs_wire.WaitForJobRequest(job_id, timeout, results_from)
        return await self._job(jobs_wire.WAIT_FOR_JOB, request.to_wire(), timeout)

    async def follow_job(
        self, job_id: str, *, results_from: int = 0, wait_s: float = FOLLOW_WAIT_S
    ) -> AsyncIterator[JobResultItem]:
        """Each node's result from ``results_from`` on, as it comes, until the job ends."""
        position = results_from
        while True:
            state = await self.wait_job(job_id, timeout=wait_s, results_from=position)
            for item in state.results:
                yield item
            position = state.results_next if state.results_next is not None else position
            if state.ended and not state.results:
                return

    async def abort_job(self, job_id: str, *, calls: bool = False) -> JobState:
        """AbortJob: start no further node; with ``calls``, abort the running calls."""
        body = jobs_wire.AbortJobRequest(job_id, calls).to_wire()
        return await self._job(jobs_wire.ABORT_JOB, body, 0.0)

    async def jobs(self, limit: int | None = None) -> list[JobState]:
        """ListJobs: the newest jobs (without results), newest first."""
        answer = await self._wire.call(jobs_wire.LIST_JOBS, {"limit": limit},
                                       self._wire.timeouts.quick_s)  # fmt: skip
        if not isinstance(answer.get("jobs"), list):
            raise self._wire.malformed("ListJobs answer lacks a list 'jobs'")
        return self._parsed(JobState.from_wire, answer["jobs"])

    async def _job(self, procedure: str, body: dict[str, Any], wait_s: float) -> JobState:
        answer = await self._wire.call(procedure, body, wait_s + self._wire.timeouts.margin_s)
        parsed: JobState = self._parsed(JobState.from_wire, [answer])[0]
        return parsed

    def _parsed(self, parse: Any, items: list[Any]) -> list[Any]:
        try:
            return [parse(item) for item in items]
        except (ValueError, TypeError) as exc:
            raise self._wire.malformed(f"malformed answer: {exc}") from exc
