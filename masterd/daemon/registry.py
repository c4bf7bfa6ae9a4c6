"""The node registry: who registered, who is alive, in memory and in the store.

Register is rare and is committed to the store before it is answered.  Heartbeats are
many (1,000 nodes every 30 s) and only touch memory: ``last_seen`` is written to the
store in batches every ``flush_interval_s``, and ListNodes reads memory, so ``missing``
is right to the heartbeat.  After a crash the store's ``last_seen`` is at most one
flush old, which only makes a node look a few seconds less recently seen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from masterd.node import Node
from masterd.store.base import NewEvent, NodeRecord, Store, StoredEvent
from rpc_client.errors import NodeConflict, RemoteError
from rpc_client.logs import event
from rpc_client.master_protocol import (
    ALIVE,
    MISSING,
    NODE_REGISTERED,
    NODE_RESTARTED,
    UNKNOWN,
    HeartbeatRequest,
    RegisterRequest,
)

log = logging.getLogger("masterd.registry")

#: a node is alive when heard from within this many heartbeat intervals
ALIVE_HEARTBEATS = 3


@dataclass
class Entry:
    """A registered node: its stored record, and what heartbeats changed since."""

    record: NodeRecord
    last_seen: float
    running: int = 0


class NodeRegistry:
    """Registered nodes by uuid and name; the nodes file's nodes, by name."""

    def __init__(
        self,
        store: Store,
        heartbeat_s: float,
        listed: Iterable[Node] = (),
        on_stored: Callable[[list[StoredEvent]], None] = lambda _: None,
    ) -> None:
        self._store = store
        self.heartbeat_s = heartbeat_s
        self._listed = {node.name: node for node in listed}
        self._on_stored = on_stored
        self._by_uuid: dict[str, Entry] = {}
        self._by_name: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._registering = asyncio.Lock()

    async def load(self) -> None:
        """Read the registered nodes from the store (at start)."""
        for record in await self._store.load_nodes():
            self._remember(record)

    async def refresh(self) -> None:
        """Take in what other masters stored (a shared store): nodes that registered
        through them, and the ``last_seen`` their heartbeats flushed; a node is alive
        when any master heard from it."""
        async with self._registering:
            await self._take_stored()

    async def _take_stored(self, uuid: str | None = None, name: str | None = None) -> None:
        """What the store holds (of the node with ``uuid`` or ``name``, if given)."""
        for record in await self._store.load_nodes(uuid=uuid, name=name):
            self._take(record)

    def _take(self, record: NodeRecord) -> None:
        """One stored node into memory: a newer record replaces the one in memory (and
        a node whose name it took, through another master); ``last_seen`` the later."""
        entry = self._by_uuid.get(record.uuid)
        if entry is not None and entry.record == dataclasses.replace(
            record, last_seen=entry.record.last_seen
        ):
            entry.last_seen = max(entry.last_seen, record.last_seen)
            return
        holder = self._by_name.get(record.name)
        if holder is not None and holder != record.uuid:
            self._forget(holder)
        if entry is not None and entry.record.name != record.name:
            self._by_name.pop(entry.record.name, None)
        seen = max(record.last_seen, entry.last_seen if entry else 0.0)
        self._remember(record).last_seen = seen

    def _remember(self, record: NodeRecord) -> Entry:
        entry = self._by_uuid[record.uuid] = Entry(record, record.last_seen)
        self._by_name[record.name] = record.uuid
        return entry

    def get(self, uuid: str) -> Entry | None:
        return self._by_uuid.get(uuid)

    def is_alive(self, entry: Entry, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return now - entry.last_seen <= ALIVE_HEARTBEATS * self.heartbeat_s

    async def register(self, request: RegisterRequest) -> None:
        """Record the node (durably) and its events; ``NodeConflict`` if another live
        uuid holds the name.  Registering again the same is harmless."""
        async with self._registering:  # rare: one at a time keeps name checks simple
            if self._store.shared:
                # it may have registered through another master (as may a node by its
                # name), a moment ago: a node failing over sends its Register again to
                # the next master, whose memory may be a refresh old (the store's save
                # checks again, in its transaction, against a Register at the same time)
                await self._take_stored(request.uuid, request.name)
            now = time.time()
            old = self._by_uuid.get(request.uuid)
            replaces = self._name_holder(request, now)
            record = NodeRecord(
                uuid=request.uuid, name=request.name, address=request.address,
                port=request.port, boot_id=request.boot_id, instance=request.instance,
                pid=request.pid, version=request.version, labels=request.labels,
                functions=request.functions,
                registered=old.record.registered if old else now, last_seen=now,
            )  # fmt: skip
            events = _registration_events(old.record if old else None, record, now, replaces)
            stored = await self._store.save_node(record, replaces, events)
            self._forget(replaces)
            if old is not None and old.record.name != record.name:
                self._by_name.pop(old.record.name, None)
            self._remember(record)
            self._dirty.discard(record.uuid)
        self._on_stored(stored)
        for stored_event in stored:
            event(log, stored_event.type, node=record.name, uuid=record.uuid,
                  instance=record.instance)  # fmt: skip

    def _name_holder(self, request: RegisterRequest, now: float) -> str | None:
        """The uuid of a dead node whose name the new one takes (None: no such node)."""
        holder = self._by_name.get(request.name)
        if holder is None or holder == request.uuid:
            return None
        if self.is_alive(self._by_uuid[holder], now):
            raise NodeConflict(
                f"the name {request.name!r} is held by another node (uuid {holder}) that "
                f"was heard from {now - self._by_uuid[holder].last_seen:.0f} s ago; give "
                "this node another name, or stop the other one and register again after "
                f"{ALIVE_HEARTBEATS} x {self.heartbeat_s:g} s"
            )
        return holder

    def _forget(self, uuid: str | None) -> None:
        if uuid is not None:
            entry = self._by_uuid.pop(uuid, None)
            if entry is not None and self._by_name.get(entry.record.name) == uuid:
                del self._by_name[entry.record.name]
            self._dirty.discard(uuid)

    def heartbeat(self, request: HeartbeatRequest) -> bool:
        """Note the node alive; True (re-register) if this uuid and instance are unknown."""
        entry = self._by_uuid.get(request.uuid)
        if entry is None or entry.record.instance != request.instance:
            return True
        entry.last_seen, entry.running = time.time(), request.running
        self._dirty.add(request.uuid)
        return False

    def seen(self, entry: Entry) -> None:
        """Any call from the node (a Report) counts as hearing from it."""
        entry.last_seen = time.time()
        self._dirty.add(entry.record.uuid)

    async def fresh_listing(self) -> list[dict[str, Any]]:
        """:meth:`listing`, with (a shared store) what other masters stored taken in
        first: a job by labels reaches a node registered through another a moment ago."""
        if self._store.shared:
            await self.refresh()
        return self.listing()

    def functions_of(self, name: str) -> tuple[str, ...]:
        """The functions node ``name`` registered (empty: none listed, or not registered)."""
        node_uuid = self._by_name.get(name)
        entry = self._by_uuid.get(node_uuid) if node_uuid else None
        return entry.record.functions if entry else ()

    def listing(self) -> list[dict[str, Any]]:
        """ListNodes' nodes: registered ones, then the nodes file's unregistered ones."""
        now = time.time()
        nodes = [self._described(entry, now) for entry in self._by_uuid.values()]
        nodes.sort(key=lambda node: node["name"])
        for name, node in self._listed.items():
            if name not in self._by_name:
                nodes.append(_unknown(node))
        return nodes

    def _described(self, entry: Entry, now: float) -> dict[str, Any]:
        record = entry.record
        listed = self._listed.get(record.name)
        labels = list(dict.fromkeys([*record.labels, *(listed.labels if listed else ())]))
        return {
            "name": record.name, "uuid": record.uuid, "address": record.address,
            "port": record.port, "labels": labels, "version": record.version,
            "boot_id": record.boot_id, "instance": record.instance,
            "state": ALIVE if self.is_alive(entry, now) else MISSING,
            "last_seen": entry.last_seen, "registered": record.registered,
        }  # fmt: skip

    def counts(self) -> dict[str, int]:
        """Nodes by state, for /metrics."""
        states = [node["state"] for node in self.listing()]
        return {state: states.count(state) for state in (ALIVE, MISSING, UNKNOWN)}

    async def flush(self) -> None:
        """Write the heartbeats' ``last_seen`` to the store; kept for the next try if the
        store fails."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        seen = {uuid: self._by_uuid[uuid].last_seen for uuid in dirty if uuid in self._by_uuid}
        try:
            await self._store.touch_nodes(seen)
        except RemoteError as exc:
            self._dirty |= dirty
            event(log, "store.flush_failed", logging.WARNING, nodes=len(seen), error=str(exc))

    async def flush_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush()


def _registration_events(
    old: NodeRecord | None, new: NodeRecord, now: float, replaces: str | None
) -> list[NewEvent]:
    """``node.registered`` for a new uuid (``replaced``: the uuid of the dead node whose
    name it took), ``node.restarted`` for a new instance."""
    if old is None:
        data: dict[str, Any] = {"address": new.address, "port": new.port,
                                "instance": new.instance, "version": new.version,
                                "replaced": replaces}  # fmt: skip
        return [NewEvent(new.uuid, new.name, NODE_REGISTERED, now, data)]
    if old.instance == new.instance:
        return []
    data = {"old_instance": old.instance, "instance": new.instance,
            "rebooted": old.boot_id != new.boot_id, "boot_id": new.boot_id,
            "version": new.version}  # fmt: skip
    return [NewEvent(new.uuid, new.name, NODE_RESTARTED, now, data)]


def _unknown(node: Node) -> dict[str, Any]:
    return {
        "name": node.name, "uuid": node.uuid, "address": node.address, "port": node.port,
        "labels": list(node.labels), "version": None, "boot_id": None, "instance": None,
        "state": UNKNOWN, "last_seen": None, "registered": None,
    }  # fmt: skip
