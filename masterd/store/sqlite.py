"""The embedded store: SQLite through the standard library's ``sqlite3``, in WAL mode.

Two connections, each on a thread of its own (``sqlite3`` objects stay on the thread
that made them): the writer, where every write runs as one ``BEGIN IMMEDIATE`` ...
``COMMIT`` with ``synchronous=FULL`` (the WAL is fsynced before the commit returns, so an
answer given after it survives a crash or a power cut), and a reader, so that reads go on
while a write waits for its fsync or fails for a full disk.  Why not an asyncio wrapper:
doc/design.md, "The master's store".

Every ``sqlite3`` error is mapped to the wire's errors in :func:`_mapped`, and a failed
write is rolled back: nothing is half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from masterd.store import migrations
from masterd.store.base import NewEvent, NodeRecord, Reported, StoredEvent
from masterd.store.group_commit import GroupCommit
from masterd.store.lock import StoreLock, hold_store_file
from masterd.store.sqlite_jobs import SQLiteJobs, transaction
from rpc_client.errors import BadRequest, InsufficientStorage, StoreUnavailable
from rpc_client.protocol import dumps, loads

T = TypeVar("T")

#: how long a statement waits for a lock held by another connection (the reader's
#: checkpoints) before failing
_BUSY_TIMEOUT_MS = 5000
#: (what failed, what the operator can do) by SQLite's primary result code
_STORAGE_CODES = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY}
_RETRY_AFTER_S = 1.0
#: longest a store operation may take before its request is answered 503
_STORE_TIMEOUT_S = 30.0

_NODE_COLUMNS = ("uuid, name, address, port, boot_id, instance, pid, version, labels, "
                 "functions, registered, last_seen")  # fmt: skip
_EVENT_COLUMNS = "id, node, seq, type, at, data, fnc_id"
#: the oldest events stored before a time, a bounded batch (``events_stored`` index)
_EXPIRE_EVENTS = ("DELETE FROM events WHERE id IN "
                  "(SELECT id FROM events WHERE stored < ? ORDER BY id LIMIT ?)")  # fmt: skip


class SQLiteStore(SQLiteJobs):
    """The :class:`~masterd.store.base.Store` on one SQLite file this masterd holds."""

    shared = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._lock: StoreLock | None = None
        self._reports = GroupCommit(self._commit_reports, "store-reports")

    # --- life -------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = hold_store_file(self.path)  # before the file is touched
        try:
            await self._write(self._open_writer)
            await self._read(self._open_reader)
        except BaseException:
            await self.close()
            raise

    def _open_writer(self, _: Any) -> None:
        db = _connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        self._write_db = db
        self._migrate(db)

    def _open_reader(self, _: Any) -> None:
        self._read_db = _connect(self.path)
        self._read_db.execute("PRAGMA query_only=ON")

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute(migrations.SCHEMA_TABLE)
        applied = db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        for migration in migrations.pending("sqlite", applied.fetchone()[0]):
            # one transaction per migration, its record included
            db.executescript(
                f"BEGIN IMMEDIATE;\n{migration.sql}\n"
                f"INSERT INTO schema_migrations VALUES ({migration.version}, "
                f"'{migration.name}', {time.time()});\nCOMMIT;"
            )

    async def close(self) -> None:
        closed = True
        for executor, attr in ((self._reader, "_read_db"), (self._writer, "_write_db")):
            if getattr(self, attr) is not None:
                try:
                    async with asyncio.timeout(_STORE_TIMEOUT_S):
                        await asyncio.get_running_loop().run_in_executor(
                            executor, self._close_connection, attr
                        )
                except (sqlite3.Error, RuntimeError, TimeoutError):
                    closed = False
            executor.shutdown(wait=False)
        if self._lock is not None and closed:  # else the exit lets it go, after the writer
            self._lock.release()
            self._lock = None

    def _close_connection(self, attr: str) -> None:
        db = getattr(self, attr)
        setattr(self, attr, None)
        db.close()

    # --- threads and errors -----------------------------------------------------

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the writer thread (``work`` opens its own transaction)."""
        return await self._on_thread(self._writer, work, "_write_db")

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._on_thread(self._reader, work, "_read_db")

    async def _on_thread(
        self, executor: ThreadPoolExecutor, work: Callable[[sqlite3.Connection], T], attr: str
    ) -> T:
        """``work`` on its connection's thread; a disk that hangs is 503, not a request
        that hangs (the work may still finish: every write here is safe to repeat)."""
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(executor, self._guarded, work, attr)
        try:
            async with asyncio.timeout(_STORE_TIMEOUT_S):
                return await asyncio.shield(done)
        except TimeoutError:
            raise StoreUnavailable(
                f"the store {self.path} did not answer within {_STORE_TIMEOUT_S:g} s",
                retry_after_s=_RETRY_AFTER_S,
            ) from None

    def _guarded(self, work: Callable[[sqlite3.Connection], T], attr: str) -> T:
        db = getattr(self, attr)
        try:
            return work(db)
        except BaseException as exc:
            if db is not None and db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.rollback()
            if isinstance(exc, sqlite3.DataError | OverflowError):
                raise BadRequest(f"the store {self.path} cannot hold a value of this "
                                 f"request: {exc}; nothing of it was stored") from exc  # fmt: skip
            if isinstance(exc, sqlite3.Error):
                raise _mapped(exc, self.path) from exc
            raise

    # --- the Store interface ------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._read(
            lambda db: db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        )

    async def add_instance(self, instance: str, advertise: str, pid: int, at: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.execute("INSERT INTO instances VALUES (?, ?, ?, ?, ?)",
                           (instance, advertise, pid, at, at))  # fmt: skip

        await self._write(work)

    async def renew_instance(self, instance: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.execute("UPDATE instances SET renewed = ? WHERE id = ?",
                           (time.time(), instance))  # fmt: skip

        await self._write(work)

    async def live_instances(self, within_s: float) -> list[str]:
        rows = await self._read(lambda db: db.execute(
            "SELECT advertise FROM instances WHERE renewed >= ? ORDER BY started, id",
            (time.time() - within_s,)).fetchall())  # fmt: skip
        return list(dict.fromkeys(row[0] for row in rows))

    def subscribe(self, on_events: Callable[[int], None]) -> None:
        """One masterd per file: every event stored is its own."""

    def subscribe_jobs(self, on_job: Callable[[str], None]) -> None:
        """One masterd per file: every job's record is its own."""

    async def expire_events(self, stored_before: float, limit: int) -> int:
        def work(db: sqlite3.Connection) -> int:
            with transaction(db):
                return db.execute(_EXPIRE_EVENTS, (stored_before, limit)).rowcount

        return await self._write(work)

    async def load_nodes(
        self, *, uuid: str | None = None, name: str | None = None
    ) -> list[NodeRecord]:
        query = f"SELECT {_NODE_COLUMNS} FROM nodes"
        args: tuple[str | None, ...] = ()
        if uuid is not None or name is not None:
            query, args = f"{query} WHERE uuid = ? OR name = ?", (uuid, name)
        rows = await self._read(lambda db: db.execute(query, args).fetchall())
        return [_node_of(row) for row in rows]

    async def save_node(
        self, node: NodeRecord, replaces: str | None, events: list[NewEvent]
    ) -> list[StoredEvent]:
        def work(db: sqlite3.Connection) -> list[StoredEvent]:
            with transaction(db):
                if replaces is not None:
                    db.execute("DELETE FROM nodes WHERE uuid = ?", (replaces,))
                db.execute(
                    f"INSERT OR REPLACE INTO nodes ({_NODE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _node_row(node),
                )
                return [stored for e in events if (stored := _insert_event(db, e))]

        return await self._write(work)

    async def touch_nodes(self, last_seen: dict[str, float]) -> None:
        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("UPDATE nodes SET last_seen = ? WHERE uuid = ?",
                               [(at, uuid) for uuid, at in last_seen.items()])  # fmt: skip

        await self._write(work)

    async def add_reported(
        self, node_uuid: str, node: str, spool: str, events: list[NewEvent]
    ) -> Reported:
        """Group commit: Reports that come while a commit runs are stored together in
        the next transaction, one fsync for all of them (as the node's journal does)."""
        return await self._reports.add(_Report(node_uuid, spool, events))

    async def _commit_reports(self, batch: list[_Report]) -> list[Reported]:
        return await self._write(functools.partial(_store_reports, batch=batch))

    async def events_after(self, from_id: int, limit: int) -> list[StoredEvent]:
        rows = await self._read(
            lambda db: db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id >= ? ORDER BY id LIMIT ?",
                (from_id, limit),
            ).fetchall()
        )
        return [StoredEvent(row[0], row[1], row[2], row[3], row[4], loads(row[5]), row[6])
                for row in rows]  # fmt: skip

    async def last_event_id(self) -> int:
        return await self._read(
            lambda db: db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        )


@dataclass
class _Report:
    """A Report waiting for the next group commit."""

    node_uuid: str
    spool: str
    events: list[NewEvent]


def _store_reports(db: sqlite3.Connection, *, batch: list[_Report]) -> list[Reported]:
    """Every Report of the batch, in one transaction (one fsync)."""
    with transaction(db):
        return [_store_report(db, report) for report in batch]


def _store_report(db: sqlite3.Connection, report: _Report) -> Reported:
    stored = [s for event in report.events if (s := _insert_event(db, event))]
    lowest = min((e.seq for e in report.events if e.seq is not None), default=None)
    return Reported(_advance_acked(db, report.node_uuid, report.spool, lowest), stored)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; each write says BEGIN IMMEDIATE
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True,
                         timeout=_BUSY_TIMEOUT_MS / 1000)  # fmt: skip
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _insert_event(db: sqlite3.Connection, event: NewEvent) -> StoredEvent | None:
    """Insert one event; None if that (node, spool, seq) is stored already."""
    cursor = db.execute(
        "INSERT OR IGNORE INTO events (node_uuid, node, spool, seq, type, at, data, fnc_id, "
        "stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event.node_uuid, event.node, event.spool, event.seq, event.type, event.at,
         dumps(event.data).decode(), event.fnc_id, time.time()),
    )  # fmt: skip
    if cursor.rowcount != 1 or cursor.lastrowid is None:
        return None
    return StoredEvent(cursor.lastrowid, event.node, event.seq, event.type, event.at,
                       event.data, event.fnc_id)  # fmt: skip


def _advance_acked(db: sqlite3.Connection, uuid: str, spool: str, lowest: int | None) -> int:
    """The spool's new ``acked``: the highest seq stored with none missing below it.

    A node sends its oldest unacknowledged event first, so a seq missing below the
    lowest of a Report is one the node no longer has (dropped from a full spool, which it
    reports as ``spool.dropped``): the run is counted from there."""
    row = db.execute("SELECT acked FROM spools WHERE node_uuid = ? AND spool = ?",
                     (uuid, spool)).fetchone()  # fmt: skip
    acked = row[0] if row else -1
    if lowest is not None:
        acked = max(acked, lowest - 1)
    seqs = db.execute(
        "SELECT seq FROM events WHERE node_uuid = ? AND spool = ? AND seq > ? ORDER BY seq",
        (uuid, spool, acked),
    )
    for (seq,) in seqs:
        if seq != acked + 1:
            break
        acked = seq
    if acked >= 0:
        db.execute("INSERT OR REPLACE INTO spools VALUES (?, ?, ?)", (uuid, spool, acked))
    return acked


def _node_row(node: NodeRecord) -> tuple[Any, ...]:
    return (node.uuid, node.name, node.address, node.port, node.boot_id, node.instance,
            node.pid, node.version, dumps(list(node.labels)).decode(),
            dumps(list(node.functions)).decode(), node.registered, node.last_seen)  # fmt: skip


def _node_of(row: tuple[Any, ...]) -> NodeRecord:
    values = list(row)
    values[8], values[9] = tuple(loads(values[8])), tuple(loads(values[9]))
    return NodeRecord(*values)


def _mapped(exc: sqlite3.Error, path: Path) -> InsufficientStorage | StoreUnavailable:
    """The one place where SQLite's errors become the wire's."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in _STORAGE_CODES:
        return InsufficientStorage(
            f"the store {path} cannot be written ({exc}); nothing of this request was "
            "stored: free space on its disk, then send it again"
        )
    return StoreUnavailable(f"the store {path} failed: {exc}", retry_after_s=_RETRY_AFTER_S)
