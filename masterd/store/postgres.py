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
- After a commit that stored events, a ``NOTIFY`` (``postgres_sql.CHANNEL``) carries the
  newest id; every masterd LISTENs and wakes its waiters, and reads ``max(id)`` every
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
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from masterd.store import postgres_sql as sql
from masterd.store.base import NewEvent, NodeRecord, Reported, StoredEvent
from masterd.store.group_commit import GroupCommit
from masterd.store.postgres_jobs import OWNER_LAPSE_S, PostgresJobs
from rpc_client.errors import BadRequest, InsufficientStorage, NodeConflict, StoreUnavailable
from rpc_client.logs import event
from rpc_client.protocol import loads

log = logging.getLogger("masterd.store")

T = TypeVar("T")

#: connections each masterd keeps for requests (one more LISTENs)
POOL_SIZE = 8
#: how often a masterd looks for events another stored, should a NOTIFY be lost
FALLBACK_POLL_S = 1.0
MAX_BACKOFF_S = 1.0
_FIRST_BACKOFF_S = 0.05
_RETRY_AFTER_S = 1.0
#: longest a store operation (connecting included) may take before it is 503
_STORE_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5.0


class PostgresStore(PostgresJobs):
    """The :class:`~masterd.store.base.Store` on a PostgreSQL database others may share."""

    shared = True

    def __init__(
        self, dsn: str, *, pool_size: int = POOL_SIZE, lease_s: float = OWNER_LAPSE_S
    ) -> None:
        self._dsn = dsn
        self.owner_lapse_s = lease_s
        self.url = without_password(dsn)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._reports = GroupCommit(self._commit_reports, "store-reports")
        self._watching: asyncio.Task[None] | None = None
        self._on_events: Callable[[int], None] = lambda _: None
        self._on_job: Callable[[str], None] = lambda _: None

    # --- life -------------------------------------------------------------------

    async def open(self) -> None:
        try:
            async with asyncio.timeout(_STORE_TIMEOUT_S * 3):
                # min_size=0: connections are made as needed, and none is forced back
                # (with a logged traceback) while the server is away
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=self._pool_size,
                    timeout=_CONNECT_TIMEOUT_S, command_timeout=_STORE_TIMEOUT_S,
                )  # fmt: skip
                async with self._pool.acquire() as conn:
                    await sql.migrate(conn)
        except (*sql.CONNECTION_LOST, asyncpg.PostgresError) as exc:
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
            except (*sql.CONNECTION_LOST, asyncpg.PostgresError):
                pool.terminate()

    def subscribe(self, on_events: Callable[[int], None]) -> None:
        """Call ``on_events(newest_id)`` when any masterd stored events (LISTEN, and a
        poll every :data:`FALLBACK_POLL_S`)."""
        self._on_events = on_events
        self._watch()

    def subscribe_jobs(self, on_job: Callable[[str], None]) -> None:
        """Call ``on_job(job_id)`` when any masterd committed a job's node end or state
        (LISTEN; ``""`` after each (re)connect, for what a lost connection missed)."""
        self._on_job = on_job
        self._watch()

    def _watch(self) -> None:
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
        except (*sql.CONNECTION_LOST, asyncpg.PostgresError) as exc:
            if isinstance(exc, asyncpg.UniqueViolationError) and "nodes_name" in str(
                exc.constraint_name
            ):
                raise _name_taken(exc) from exc
            if isinstance(exc, sql.DATA_ERRORS):
                raise _refused_value(exc, self.url) from exc
            if isinstance(exc, sql.CONNECTION_LOST):
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
                await conn.add_listener(sql.CHANNEL, self._notified)
                await conn.add_listener(sql.JOBS_CHANNEL, self._job_notified)
                self._on_job("")  # what was committed while not listening
                backoff_s = _FIRST_BACKOFF_S
                while True:  # the fallback poll, which also notices a dead connection
                    async with asyncio.timeout(_STORE_TIMEOUT_S):
                        found = await conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
                    if found > newest:
                        newest = found
                        self._on_events(found)
                    await asyncio.sleep(FALLBACK_POLL_S)
            except (*sql.CONNECTION_LOST, asyncpg.PostgresError) as exc:
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

    def _job_notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._on_job(payload)

    # --- the Store interface ------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._run(
            lambda conn: conn.fetchval("SELECT max(version) FROM schema_migrations")
        )

    async def add_instance(self, instance: str, advertise: str, pid: int, at: float) -> None:
        await self._run(lambda conn: conn.execute(
            f"INSERT INTO instances VALUES ($1, $2, $3, $4, {sql.NOW})",
            instance, advertise, pid, at))  # fmt: skip

    async def renew_instance(self, instance: str) -> None:
        await self._run(lambda conn: conn.execute(
            f"UPDATE instances SET renewed = {sql.NOW} WHERE id = $1", instance))  # fmt: skip

    async def live_instances(self, within_s: float) -> list[str]:
        rows = await self._run(lambda conn: conn.fetch(
            f"SELECT advertise FROM instances WHERE renewed >= {sql.NOW} - $1 "
            "ORDER BY started, id", within_s))  # fmt: skip
        return list(dict.fromkeys(row[0] for row in rows))

    async def expire_events(self, stored_before: float, limit: int) -> int:
        status = await self._run(lambda conn: conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE stored < $1 "
            "ORDER BY id LIMIT $2)", stored_before, limit))  # fmt: skip
        return int(status.split()[-1])

    async def load_nodes(
        self, *, uuid: str | None = None, name: str | None = None
    ) -> list[NodeRecord]:
        query = f"SELECT {sql.NODE_COLUMNS} FROM nodes"
        args: tuple[str | None, ...] = ()
        if uuid is not None or name is not None:
            query, args = f"{query} WHERE uuid = $1 OR name = $2", (uuid, name)
        rows = await self._run(lambda conn: conn.fetch(query, *args))
        return [sql.node_of(tuple(row)) for row in rows]

    async def save_node(
        self, node: NodeRecord, replaces: str | None, events: list[NewEvent]
    ) -> list[StoredEvent]:
        async def work(conn: asyncpg.Connection) -> list[StoredEvent]:
            async with conn.transaction():
                # another master may have stored this instance a moment ago
                new = [] if await sql.registered_already(conn, node) else events
                if replaces is not None:
                    await conn.execute("DELETE FROM nodes WHERE uuid = $1", replaces)
                await conn.execute(sql.UPSERT_NODE, *sql.node_row(node))
                stored = await sql.insert_events(conn, new)
            await sql.notify(conn, stored)
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
        return await self._reports.add(sql.PendingReport(node_uuid, spool, events))

    async def _commit_reports(self, batch: list[sql.PendingReport]) -> list[Reported]:
        return await self._run(functools.partial(sql.store_reports, batch=batch))

    async def events_after(self, from_id: int, limit: int) -> list[StoredEvent]:
        rows = await self._run(lambda conn: conn.fetch(
            f"SELECT {sql.EVENT_COLUMNS} FROM events WHERE id >= $1 ORDER BY id LIMIT $2",
            from_id, limit))  # fmt: skip
        return [StoredEvent(row[0], row[1], row[2], row[3], row[4], loads(row[5]), row[6])
                for row in rows]  # fmt: skip

    async def last_event_id(self) -> int:
        return await self._run(
            lambda conn: conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
        )


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


def _refused_value(exc: BaseException, url: str) -> BadRequest:
    """A value the database cannot hold: 400, never 503 (a client would send it again
    for ever); the parsers bound every field, so this is a last line."""
    return BadRequest(f"the store {url} cannot hold a value of this request: {exc}; "
                      "nothing of it was stored")  # fmt: skip


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
