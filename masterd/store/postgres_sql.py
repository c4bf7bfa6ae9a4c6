"""The PostgreSQL store's transactions: what runs on one connection (asyncpg), used by
:class:`masterd.store.postgres.PostgresStore`, which owns the pool and maps the errors."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from masterd.store import migrations
from masterd.store.base import NewEvent, NodeRecord, Reported, StoredEvent
from rpc_client.protocol import dumps, loads

#: the NOTIFY channel of new events; the payload is the newest id
CHANNEL = "masterd_events"
#: the NOTIFY channel of jobs: a node's end or the job's state was committed (the payload
#: is the job's id), sent by the statement that writes it, so at its commit
JOBS_CHANNEL = "masterd_jobs"
#: errors that mean the connection (or the server) is gone, not that a statement failed
#: (InternalClientError: a connection cut in the middle of an operation, as on a server's
#: fast shutdown)
CONNECTION_LOST = (OSError, TimeoutError, asyncpg.InterfaceError,
                   asyncpg.PostgresConnectionError,
                   asyncpg.exceptions.InternalClientError)  # fmt: skip
#: a value the database refused (out of a column's range, not valid for its type), on the
#: server (class 22) or in asyncpg's encoding of an argument: the request's fault, not an
#: outage (checked before CONNECTION_LOST, of which asyncpg's own is a kind)
DATA_ERRORS = (asyncpg.DataError, asyncpg.exceptions._base.DataError)
#: advisory lock keys (any two fixed numbers of ours)
_MIGRATE_LOCK = 0x6D617374_01
_EVENTS_LOCK = 0x6D617374_02
#: the first key of the per-node locks (two int4 keys: the other is the uuid's hash; a
#: key space apart from the single-bigint keys above)
_NODE_LOCKS = 0x6D617374

NODE_COLUMNS = ("uuid, name, address, port, boot_id, instance, pid, version, labels, "
                "functions, registered, last_seen")  # fmt: skip
EVENT_COLUMNS = "id, node, seq, type, at, data, fnc_id"
NOW = "extract(epoch from now())"


@dataclass
class PendingReport:
    """A Report waiting for the next group commit."""

    node_uuid: str
    spool: str
    events: list[NewEvent]


UPSERT_NODE = (
    f"INSERT INTO nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
    "$11, $12) ON CONFLICT (uuid) DO UPDATE SET name = $2, address = $3, port = $4, "
    "boot_id = $5, instance = $6, pid = $7, version = $8, labels = $9, functions = $10, "
    "registered = $11, last_seen = GREATEST(nodes.last_seen, $12)"
)
#: every event of one transaction in one statement, in the order given (the identity is
#: drawn as the ordered rows are inserted, under the events lock: ids follow the input)
_INSERT_EVENTS = (
    "INSERT INTO events (node_uuid, node, spool, seq, type, at, data, fnc_id, stored) "
    f"SELECT u, n, sp, sq, t, a, d, f, {NOW} FROM unnest($1::text[], $2::text[], "
    "$3::text[], $4::bigint[], $5::text[], $6::float8[], $7::text[], $8::text[]) "
    "WITH ORDINALITY AS e(u, n, sp, sq, t, a, d, f, ord) ORDER BY ord "
    "ON CONFLICT (node_uuid, spool, seq) DO NOTHING RETURNING id, node_uuid, spool, seq"
)


async def migrate(conn: asyncpg.Connection) -> None:
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


async def registered_already(conn: asyncpg.Connection, node: NodeRecord) -> bool:
    """Whether the stored row of ``node``'s uuid has its instance already: a Register
    another master took first (a node failing over, or sent to two at once), whose
    events are stored.  Registrations of one uuid take turns (an advisory lock held
    to the commit), so of two at once one stores the events and the other sees them."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _NODE_LOCKS, node.uuid)
    stored = await conn.fetchval("SELECT instance FROM nodes WHERE uuid = $1", node.uuid)
    return bool(stored == node.instance)


async def insert_events(conn: asyncpg.Connection, events: list[NewEvent]) -> list[StoredEvent]:
    """Insert events (in the caller's transaction), in one round trip; those whose
    (node, spool, seq) is stored already, or came earlier in ``events``, are left out."""
    if not events:
        return []
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _EVENTS_LOCK)
    columns = (
        [e.node_uuid for e in events], [e.node for e in events], [e.spool for e in events],
        [e.seq for e in events], [e.type for e in events], [e.at for e in events],
        [dumps(e.data).decode() for e in events], [e.fnc_id for e in events],
    )  # fmt: skip
    rows = await conn.fetch(_INSERT_EVENTS, *columns)
    ids = sorted(row[0] for row in rows)
    inserted = _inserted_keys(events, {(row[1], row[2], row[3]) for row in rows})
    if len(inserted) != len(ids):
        raise RuntimeError(f"{len(ids)} events inserted, {len(inserted)} expected")
    return [StoredEvent(new_id, e.node, e.seq, e.type, e.at, e.data, e.fnc_id)
            for new_id, e in zip(ids, inserted, strict=True)]  # fmt: skip


def _inserted_keys(events: list[NewEvent], keys: set[tuple[Any, Any, Any]]) -> list[NewEvent]:
    """The events the INSERT took, in their order: each keyed one the first time its
    key comes back (a key repeated in one batch is taken once); an event with a null in
    its key always (nulls are distinct in the unique index)."""
    taken, seen = [], set()
    for e in events:
        key = (e.node_uuid, e.spool, e.seq)
        if None in key:
            taken.append(e)
        elif key in keys and key not in seen:
            seen.add(key)
            taken.append(e)
    return taken


async def notify(conn: asyncpg.Connection, stored: list[StoredEvent]) -> None:
    """After the commit: tell the other masters; a lost notification is found by their
    fallback poll, so a failure here fails nothing."""
    if stored:
        with contextlib.suppress(*CONNECTION_LOST, asyncpg.PostgresError):
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(stored[-1].id))


async def store_reports(conn: asyncpg.Connection, *, batch: list[PendingReport]) -> list[Reported]:
    """Every Report of the batch in one transaction, then one NOTIFY."""
    async with conn.transaction():
        results = [await _store_report(conn, report) for report in batch]
    await notify(conn, [e for result in results for e in result.stored])
    return results


async def _store_report(conn: asyncpg.Connection, report: PendingReport) -> Reported:
    stored = await insert_events(conn, report.events)
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


def node_row(node: NodeRecord) -> tuple[Any, ...]:
    return (node.uuid, node.name, node.address, node.port, node.boot_id, node.instance,
            node.pid, node.version, dumps(list(node.labels)).decode(),
            dumps(list(node.functions)).decode(), node.registered, node.last_seen)  # fmt: skip


def node_of(row: tuple[Any, ...]) -> NodeRecord:
    values = list(row)
    values[8], values[9] = tuple(loads(values[8])), tuple(loads(values[9]))
    return NodeRecord(*values)
