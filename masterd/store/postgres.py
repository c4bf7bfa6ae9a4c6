"""The shared store: PostgreSQL through asyncpg, for several masterd on one database.

Connections: a pool of :data:`POOL_SIZE` for requests and the heartbeats' flush, and one
more that LISTENs (:data:`POOL_SIZE` + 1 per masterd).  Every write is one transaction,
committed before the method returns (PostgreSQL's ``synchronous_commit`` decides how
durable a commit is; its default, ``on``, flushes the WAL first).

Several masters at once (PROTOCOL.md, "Several masters on one PostgreSQL"):

- ``(uuid, spool, seq)`` has a unique index and inserts say ``ON CONFLICT DO NOTHING``:
  a node that reaches two masters with one event has it stored once.
- Transactions that insert events first take one advisory lock, so that event ids become
  visible in id order: WaitForEvents' ``from_id`` is a position no later commit goes
  behind.  (Reports still share a commit per masterd, so the lock is taken once per
  batch.)
- ``last_seen`` is flushed with ``GREATEST``: a master with an older heartbeat in memory
  never moves it back.
- After a commit that stored events, a ``NOTIFY`` on :data:`CHANNEL` carries the newest
  id; every masterd LISTENs and wakes its waiters, and reads ``max(id)`` every
  :data:`FALLBACK_POLL_S` in case a notification was lost across a reconnect.
- Live masters: ``renewed`` is the database's clock (``now()``), so masters whose clocks
  differ still agree on who is live.

Every asyncpg and socket error is mapped to the wire's errors in :func:`_mapped`.  After
one, the store fails fast (503 ``StoreUnavailable``) for a short backoff that doubles up
to :data:`MAX_BACKOFF_S`, then tries again; asyncpg's pool replaces connections that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from masterd.store import migrations
from masterd.store.base import NewEvent, NodeRecord, Reported, StoredEvent
from rpc_client.errors import InsufficientStorage, NodeConflict, StoreUnavailable
from rpc_client.logs import event
from rpc_client.protocol import dumps, loads

log = logging.getLogger("masterd.store")

T = TypeVar("T")

#: connections each masterd keeps for requests (one more LISTENs)
POOL_SIZE = 8
#: the NOTIFY channel of new events; the payload is the newest id
CHANNEL = "masterd_events"
#: how often a masterd looks for events another stored, should a NOTIFY be lost
FALLBACK_POLL_S = 1.0
MAX_BACKOFF_S = 1.0
_FIRST_BACKOFF_S = 0.05
_RETRY_AFTER_S = 1.0
#: longest a store operation (connecting included) may take before it is 503
_STORE_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5.0
#: advisory lock keys (any two fixed numbers of ours)
_MIGRATE_LOCK = 0x6D617374_01
_EVENTS_LOCK = 0x6D617374_02

_NODE_COLUMNS = ("uuid, name, address, port, boot_id, instance, pid, version, labels, "
                 "functions, registered, last_seen")  # fmt: skip
_EVENT_COLUMNS = "id, node, seq, type, at, data, fnc_id"
_NOW = "extract(epoch from now())"
_CONNECTION_LOST = (OSError, TimeoutError, asyncpg.InterfaceError,
                    asyncpg.PostgresConnectionError)  # fmt: skip


class PostgresStore:
    """The :class:`~masterd.store.base.Store` on a PostgreSQL database others may share."""

    shared = True

    def __init__(self, dsn: str, *, pool_size: int = POOL_SIZE) -> None:
        self._dsn = dsn
        self.url = without_password(dsn)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._reports: list[_Report] = []
        self._committing: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._on_events: Callable[[int], None] = lambda _: None

    # --- life -------------------------------------------------------------------

    async def open(self) -> None:
        try:
            async with asyncio.timeout(_STORE_TIMEOUT_S * 3):
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._pool_size,
                    timeout=_CONNECT_TIMEOUT_S, command_timeout=_STORE_TIMEOUT_S,
                )  # fmt: skip
                async with self._pool.acquire() as conn:
                    await _migrate(conn)
        except (*_CONNECTION_LOST, asyncpg.PostgresError) as exc:
            await self.close()
            raise _mapped(exc, self.url) from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
            self._watching = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(_STORE_TIMEOUT_S):
                    await pool.close()
            except (*_CONNECTION_LOST, asyncpg.PostgresError):
                pool.terminate()

    def subscribe(self, on_events: Callable[[int], None]) -> None:
        """Call ``on_events(newest_id)`` when any masterd stored events (LISTEN, and a
        poll every :data:`FALLBACK_POLL_S`)."""
        self._on_events = on_events
        if self._watching is None:
            self._watching = asyncio.create_task(self._watch_forever(), name="store-listen")

    # --- connections and errors ---------------------------------------------------

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` on a pooled connection (``work`` opens its own transaction)."""
        if self._pool is None:
            raise StoreUnavailable(f"the store {self.url} is not open")
        if time.monotonic() < self._retry_at:
            raise StoreUnavailable(
                f"the store {self.url} failed a moment ago; trying again shortly",
                retry_after_s=_RETRY_AFTER_S,
            )
        try:
            async with asyncio.timeout(_STORE_TIMEOUT_S), self._pool.acquire() as conn:
                result = await work(conn)
        except (*_CONNECTION_LOST, asyncpg.PostgresError) as exc:
            if isinstance(exc, asyncpg.UniqueViolationError) and "nodes_name" in str(
                exc.constraint_name
            ):
                raise _name_taken(exc) from exc
            if isinstance(exc, _CONNECTION_LOST):
                self._failed(exc)
            raise _mapped(exc, self.url) from exc
        self._backoff_s = 0.0
        return result

    def _failed(self, exc: BaseException) -> None:
        self._backoff_s = min(MAX_BACKOFF_S, max(_FIRST_BACKOFF_S, self._backoff_s * 2))
        self._retry_at = time.monotonic() + self._backoff_s
        event(log, "store.unavailable", logging.WARNING, store=self.url,
              backoff_s=self._backoff_s, error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    async def _watch_forever(self) -> None:
        """LISTEN on a connection of its own; reconnect with backoff when it is lost."""
        backoff_s = _FIRST_BACKOFF_S
        newest = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=_CONNECT_TIMEOUT_S)
                await conn.add_listener(CHANNEL, self._notified)
                backoff_s = _FIRST_BACKOFF_S
                while True:  # the fallback poll, which also notices a dead connection
                    async with asyncio.timeout(_STORE_TIMEOUT_S):
                        found = await conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
                    if found > newest:
                        newest = found
                        self._on_events(found)
                    await asyncio.sleep(FALLBACK_POLL_S)
            except (*_CONNECTION_LOST, asyncpg.PostgresError) as exc:
                event(log, "store.listen_lost", logging.WARNING, store=self.url,
                      error=f"{type(exc).__name__}: {exc}", retry_s=backoff_s)  # fmt: skip
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff_s)
            backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._on_events(int(payload))

    # --- the Store interface ------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._run(
            lambda conn: conn.fetchval("SELECT max(version) FROM schema_migrations")
        )

    async def add_instance(self, instance: str, advertise: str, pid: int, at: float) -> None:
        await self._run(lambda conn: conn.execute(
            f"INSERT INTO instances VALUES ($1, $2, $3, $4, {_NOW})",
            instance, advertise, pid, at))  # fmt: skip

    async def renew_instance(self, instance: str, advertise: str, pid: int) -> None:
        await self._run(lambda conn: conn.execute(
            f"INSERT INTO instances VALUES ($1, $2, $3, {_NOW}, {_NOW}) ON CONFLICT (id) "
            f"DO UPDATE SET renewed = {_NOW}, advertise = $2",
            instance, advertise, pid))  # fmt: skip

    async def live_instances(self, within_s: float) -> list[str]:
        rows = await self._run(lambda conn: conn.fetch(
            f"SELECT advertise FROM instances WHERE renewed >= {_NOW} - $1 "
            "ORDER BY started, id", within_s))  # fmt: skip
        return list(dict.fromkeys(row[0] for row in rows))

    async def load_nodes(self) -> list[NodeRecord]:
        rows = await self._run(lambda conn: conn.fetch(f"SELECT {_NODE_COLUMNS} FROM nodes"))
        return [_node_of(tuple(row)) for row in rows]

    async def save_node(
        self, node: NodeRecord, replaces: str | None, events: list[NewEvent]
    ) -> list[StoredEvent]:
        async def work(conn: asyncpg.Connection) -> list[StoredEvent]:
            async with conn.transaction():
                if replaces is not None:
                    await conn.execute("DELETE FROM nodes WHERE uuid = $1", replaces)
                await conn.execute(_UPSERT_NODE, *_node_row(node))
                stored = await _insert_events(conn, events)
            await _notify(conn, stored)
            return stored

        return await self._run(work)

    async def touch_nodes(self, last_seen: dict[str, float]) -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE nodes SET last_seen = GREATEST(nodes.last_seen, seen.at) "
            "FROM unnest($1::text[], $2::float8[]) AS seen(uuid, at) "
            "WHERE nodes.uuid = seen.uuid", list(last_seen), list(last_seen.values())))  # fmt: skip

    async def add_reported(
        self, node_uuid: str, node: str, spool: str, events: list[NewEvent]
    ) -> Reported:
        """Group commit, as the SQLite store: Reports that come while a commit runs share
        the next transaction (and its one advisory lock)."""
        answer: asyncio.Future[Reported] = asyncio.get_running_loop().create_future()
        self._reports.append(_Report(node_uuid, spool, events, answer))
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_reports(), name="store-reports")
        return await answer

    async def _commit_reports(self) -> None:
        try:
            while self._reports:
                batch, self._reports = self._reports, []
                try:
                    results = await self._run(functools.partial(_store_reports, batch=batch))
                except Exception as exc:  # each waiting Report gets the store's error
                    for report in batch:
                        if not report.answer.done():
                            report.answer.set_exception(exc)
                    continue
                for report, result in zip(batch, results, strict=True):
                    if not report.answer.done():
                        report.answer.set_result(result)
        finally:
            self._committing = None

    async def events_after(self, from_id: int, limit: int) -> list[StoredEvent]:
        rows = await self._run(lambda conn: conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id >= $1 ORDER BY id LIMIT $2",
            from_id, limit))  # fmt: skip
        return [StoredEvent(row[0], row[1], row[2], row[3], row[4], loads(row[5]), row[6])
                for row in rows]  # fmt: skip

    async def last_event_id(self) -> int:
        return await self._run(
            lambda conn: conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
        )


@dataclass
class _Report:
    """A Report waiting for the next group commit."""

    node_uuid: str
    spool: str
    events: list[NewEvent]
    answer: asyncio.Future[Reported]


_UPSERT_NODE = (
    f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
    "$11, $12) ON CONFLICT (uuid) DO UPDATE SET name = $2, address = $3, port = $4, "
    "boot_id = $5, instance = $6, pid = $7, version = $8, labels = $9, functions = $10, "
    "registered = $11, last_seen = GREATEST(nodes.last_seen, $12)"
)
_INSERT_EVENT = (
    "INSERT INTO events (node_uuid, node, spool, seq, type, at, data, fnc_id, stored) "
    f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {_NOW}) "
    "ON CONFLICT (node_uuid, spool, seq) DO NOTHING RETURNING id"
)


async def _migrate(conn: asyncpg.Connection) -> None:
    """The pending migrations, each in a transaction with its record; masters starting
    together take turns (an advisory lock)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATE_LOCK)
    try:
        await conn.execute(migrations.SCHEMA_TABLE)
        applied = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        for migration in migrations.pending("postgres", applied):
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                                   migration.version, migration.name, time.time())  # fmt: skip
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATE_LOCK)


async def _insert_events(conn: asyncpg.Connection, events: list[NewEvent]) -> list[StoredEvent]:
    """Insert events (in the caller's transaction); those whose (node, spool, seq) is
    stored already are left out."""
    if not events:
        return []
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _EVENTS_LOCK)
    stored = []
    for e in events:
        new_id = await conn.fetchval(
            _INSERT_EVENT, e.node_uuid, e.node, e.spool, e.seq, e.type, e.at,
            dumps(e.data).decode(), e.fnc_id,
        )  # fmt: skip
        if new_id is not None:
            stored.append(StoredEvent(new_id, e.node, e.seq, e.type, e.at, e.data, e.fnc_id))
    return stored


async def _notify(conn: asyncpg.Connection, stored: list[StoredEvent]) -> None:
    """After the commit: tell the other masters; a lost notification is found by their
    fallback poll, so a failure here fails nothing."""
    if stored:
        with contextlib.suppress(*_CONNECTION_LOST, asyncpg.PostgresError):
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(stored[-1].id))


async def _store_reports(conn: asyncpg.Connection, *, batch: list[_Report]) -> list[Reported]:
    """Every Report of the batch in one transaction, then one NOTIFY."""
    async with conn.transaction():
        results = [await _store_report(conn, report) for report in batch]
    await _notify(conn, [e for result in results for e in result.stored])
    return results


async def _store_report(conn: asyncpg.Connection, report: _Report) -> Reported:
    stored = await _insert_events(conn, report.events)
    lowest = min((e.seq for e in report.events if e.seq is not None), default=None)
    return Reported(await _advance_acked(conn, report.node_uuid, report.spool, lowest), stored)


async def _advance_acked(
    conn: asyncpg.Connection, uuid: str, spool: str, lowest: int | None
) -> int:
    """The spool's new ``acked`` (the rule of the SQLite store's ``_advance_acked``);
    written with GREATEST, so two masters never move it back."""
    acked = await conn.fetchval("SELECT acked FROM spools WHERE node_uuid = $1 AND spool = $2",
                                uuid, spool)  # fmt: skip
    acked = -1 if acked is None else acked
    if lowest is not None:
        acked = max(acked, lowest - 1)
    rows = await conn.fetch(
        "SELECT seq FROM events WHERE node_uuid = $1 AND spool = $2 AND seq > $3 ORDER BY seq",
        uuid, spool, acked,
    )  # fmt: skip
    for (seq,) in rows:
        if seq != acked + 1:
            break
        acked = seq
    if acked >= 0:
        acked = await conn.fetchval(
            "INSERT INTO spools VALUES ($1, $2, $3) ON CONFLICT (node_uuid, spool) "
            "DO UPDATE SET acked = GREATEST(spools.acked, $3) RETURNING acked",
            uuid, spool, acked,
        )  # fmt: skip
    return acked


def _node_row(node: NodeRecord) -> tuple[Any, ...]:
    return (node.uuid, node.name, node.address, node.port, node.boot_id, node.instance,
            node.pid, node.version, dumps(list(node.labels)).decode(),
            dumps(list(node.functions)).decode(), node.registered, node.last_seen)  # fmt: skip


def _node_of(row: tuple[Any, ...]) -> NodeRecord:
    values = list(row)
    values[8], values[9] = tuple(loads(values[8])), tuple(loads(values[9]))
    return NodeRecord(*values)


def without_password(dsn: str) -> str:
    """The URL as logs and messages may show it."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _name_taken(exc: asyncpg.UniqueViolationError) -> NodeConflict:
    return NodeConflict(
        "the node's name is held by another node that registered through another master; "
        "give this node another name, or stop the other one and register again later"
    )


def _mapped(exc: BaseException, url: str) -> InsufficientStorage | StoreUnavailable:
    """The one place where asyncpg's and the socket's errors become the wire's."""
    if isinstance(exc, asyncpg.DiskFullError):
        return InsufficientStorage(
            f"the store {url} cannot be written ({exc}); nothing of this request was "
            "stored: free space on the database server, then send it again"
        )
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"the store {url} did not answer within {_STORE_TIMEOUT_S:g} s",
                                retry_after_s=_RETRY_AFTER_S)  # fmt: skip
    return StoreUnavailable(f"the store {url} failed: {type(exc).__name__}: {exc}",
                            retry_after_s=_RETRY_AFTER_S)  # fmt: skip
