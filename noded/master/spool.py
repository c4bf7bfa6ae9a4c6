"""The event spool: the node's events until a master acknowledges them.

An SQLite file in the state directory (``master-spool.sqlite3``): one table of events
by ``seq`` and one of settings (the spool's id and the next ``seq``).  Why SQLite rather
than an append-only file: dropping the oldest events and deleting acknowledged ones are
a ``DELETE`` each, not a file rewrite; a batch is one transaction, fsynced once
(``synchronous=FULL``); a crash mid-batch leaves the batch out, never half of it.

Bounded: past ``max_events``, or ``max_bytes`` of events (their encoded data, type and
fnc_id), the oldest are deleted, and a ``spool.dropped`` event saying how many takes its
place.  The files follow: deleted pages are reused, and the write-ahead log is
checkpointed every :data:`WAL_CHECKPOINT_PAGES` and cut back to :data:`WAL_KEEP_BYTES`
(a transaction's own size aside: the queue writes at most :data:`BATCH_BYTES` in one),
and nothing is written that would leave the file system less than
:data:`DISK_RESERVE_BYTES` free.  ``seq`` keeps counting across restarts; the master
acknowledges by ``seq`` and takes a gap below a Report's lowest as dropped.

Synchronous and not thread-safe: the reporter runs it on one thread of its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from rpc_client.master_protocol import NodeEvent

SPOOL_FILE: Final = "master-spool.sqlite3"
SPOOL_DROPPED: Final = "spool.dropped"
#: the default byte bound: this, or an eighth of the state directory's file system if less
#: (the journal, the calls' output and results need room too)
DEFAULT_MAX_BYTES: Final = 64 << 20
#: the smallest byte bound: a few of the largest events (noded.master.events.MAX_DATA_BYTES)
MIN_MAX_BYTES: Final = 1 << 20
#: the most bytes of events written in one transaction (the write-ahead log's growth)
BATCH_BYTES: Final = 1 << 20
#: write-ahead log pages (4 KiB) before it is copied into the database
WAL_CHECKPOINT_PAGES: Final = 256
#: the write-ahead log is cut back to this once checkpointed
WAL_KEEP_BYTES: Final = 1 << 20
#: the spool writes nothing that would leave its file system less free than this (the
#: journal's records and the calls' output need room more than events do)
DISK_RESERVE_BYTES: Final = 4 << 20
#: an event's size in the byte bound: its columns, without SQLite's own few bytes
_SIZE_SQL = "LENGTH(data) + LENGTH(type) + COALESCE(LENGTH(fnc_id), 0)"

#: SQLite's SQLITE_CORRUPT and SQLITE_NOTADB: a file to set aside
_DAMAGED = (11, 26)
#: the size of a ``spool.dropped`` event, at most
_DROPPED_BYTES = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, type TEXT NOT NULL, at REAL NOT NULL, data BLOB NOT NULL,
    fnc_id TEXT
);
"""


@dataclass(frozen=True)
class NewEvent:
    """An event not yet in the spool: it gets its ``seq`` there."""

    type: str
    data: Any
    fnc_id: str | None
    at: float
    #: what it counts in the spool's byte bound (data as encoded, type and fnc_id)
    size: int = 0

    def encoded(self) -> bytes:
        return orjson.dumps(self.data)


def spool_bound(state_dir: Path, configured: int | None) -> int:
    """``--spool-max-bytes``, or its default for ``state_dir``'s file system."""
    if configured is not None:
        return configured
    try:
        disk = os.statvfs(state_dir)
        eighth = disk.f_blocks * disk.f_frsize // 8
    except OSError:
        eighth = DEFAULT_MAX_BYTES
    return max(MIN_MAX_BYTES, min(DEFAULT_MAX_BYTES, eighth))


class Spool:
    """The bounded, durable queue of a node's events."""

    def __init__(self, path: Path, max_events: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_events < 2:
            raise ValueError(f"a spool holds at least 2 events, got {max_events}")
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"a spool holds at least {MIN_MAX_BYTES} bytes, got {max_bytes}")
        self.path = path
        self.max_events, self.max_bytes = max_events, max_bytes
        self._db = _open(path)
        self.spool_id = self._setting("spool") or self._new_setting("spool", uuid.uuid4().hex)
        self._next_seq, self.count, self.bytes = 1, 0, 0
        self._reread()
        #: events dropped since the spool was opened (for the log)
        self.dropped = 0

    def append(self, events: list[NewEvent], lost: int = 0) -> int:
        """Store ``events`` in one fsynced transaction; ``lost`` (dropped before they
        reached the spool) is counted in the ``spool.dropped`` event.  Returns how many
        were dropped, the oldest first, to keep within ``max_events`` and ``max_bytes``."""
        self._check_room(sum(new.size for new in events))
        try:
            with self._db:
                for new in events:
                    self._insert(new.type, new.at, new.encoded(), new.fnc_id)
                dropped = self._drop_oldest(lost)
                self._db.execute(
                    "INSERT OR REPLACE INTO settings VALUES ('next_seq', ?)",
                    (str(self._next_seq),),
                )
        except sqlite3.Error:
            self._reread()  # rolled back: the counts as they are on disk
            raise
        return dropped

    def _check_room(self, size: int) -> None:
        """``OSError(ENOSPC)`` unless ``size`` bytes of events, twice (the database and
        its write-ahead log), leave :data:`DISK_RESERVE_BYTES` of the file system free."""
        disk = os.statvfs(self.path.parent)
        if disk.f_bavail * disk.f_frsize - 2 * size < DISK_RESERVE_BYTES:
            raise OSError(errno.ENOSPC, f"fewer than {DISK_RESERVE_BYTES} bytes would be left "
                          "free on the state directory's file system", str(self.path))  # fmt: skip

    def _reread(self) -> None:
        self._next_seq = int(self._setting("next_seq") or "1")
        self._recount()

    def _recount(self) -> None:
        self.count, self.bytes = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM({_SIZE_SQL}), 0) FROM events"
        ).fetchone()

    def pending(self, limit: int) -> list[NodeEvent]:
        """The oldest ``limit`` events not yet acknowledged, by ``seq``."""
        rows = self._db.execute(
            "SELECT seq, type, at, data, fnc_id FROM events ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [
            NodeEvent(seq, kind, at, orjson.loads(data), fnc) for seq, kind, at, data, fnc in rows
        ]

    def acknowledge(self, acked: int) -> None:
        """Forget the events up to ``seq`` ``acked``: the master has them.

        Not fsynced (the next append's fsync takes it along): an acknowledgement lost in
        a power cut only sends those events again, which the master stores once."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._db:
                self._db.execute("DELETE FROM events WHERE seq <= ?", (acked,))
        finally:
            self._db.execute("PRAGMA synchronous=FULL")
        self._recount()

    def close(self) -> None:
        self._db.close()

    def _insert(self, kind: str, at: float, data: bytes, fnc_id: str | None) -> None:
        self._db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)", (self._next_seq, kind, at, data, fnc_id)
        )
        self._next_seq += 1
        self.count += 1
        self.bytes += len(data) + len(kind) + len(fnc_id or "")

    def _drop_oldest(self, lost: int) -> int:
        """Make room: delete the oldest events past either bound (and room for the
        ``spool.dropped`` event that says so)."""
        if self.count <= self.max_events and self.bytes <= self.max_bytes and lost == 0:
            return 0
        over = self._delete_oldest(self.count + 1 - self.max_events,
                                   self.bytes + _DROPPED_BYTES - self.max_bytes)  # fmt: skip
        self.dropped += over + lost
        data = orjson.dumps(
            {"count": over + lost, "max_events": self.max_events, "max_bytes": self.max_bytes}
        )
        self._insert(SPOOL_DROPPED, time.time(), data, None)
        return over

    def _delete_oldest(self, events: int, size: int) -> int:
        """Delete the oldest events, at least ``events`` of them and ``size`` bytes;
        returns how many."""
        last, deleted = 0, 0
        rows = self._db.execute(f"SELECT seq, {_SIZE_SQL} FROM events ORDER BY seq").fetchall()
        for seq, bytes_ in rows:
            if deleted >= events and size <= 0:
                break
            last, deleted, size = seq, deleted + 1, size - bytes_
        if deleted:
            self._db.execute("DELETE FROM events WHERE seq <= ?", (last,))
            self._recount()
        return deleted

    def _setting(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _new_setting(self, name: str, value: str) -> str:
        with self._db:
            self._db.execute("INSERT INTO settings VALUES (?, ?)", (name, value))
        return value


def _open(path: Path) -> sqlite3.Connection:
    """The spool's database; a damaged file is set aside (``.damaged``) for a new one
    (not one that could not be read for want of room: its events are kept)."""
    try:
        return _connect(path)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _DAMAGED:
            raise OSError(f"cannot open the event spool {path}: {exc}") from exc
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name(path.name + ".damaged"))
        return _connect(path)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        db.executescript(_SCHEMA)
    except sqlite3.DatabaseError:
        db.close()
        raise
    db.isolation_level = "DEFERRED"  # ``with db`` is then one transaction
    return db
