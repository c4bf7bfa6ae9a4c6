"""The event spool: the node's events until a master acknowledges them.

An SQLite file in the state directory (``master-spool.sqlite3``): one table of events
by ``seq`` and one of settings (the spool's id and the next ``seq``).  Why SQLite rather
than an append-only file: dropping the oldest events and deleting acknowledged ones are
a ``DELETE`` each, not a file rewrite; a batch is one transaction, fsynced once
(``synchronous=FULL``); a crash mid-batch leaves the batch out, never half of it.

Bounded: past ``max_events`` the oldest are deleted, and a ``spool.dropped`` event
saying how many takes its place in the count.  ``seq`` keeps counting across restarts;
the master acknowledges by ``seq`` and takes a gap below a Report's lowest as dropped.

Synchronous and not thread-safe: the reporter runs it on one thread of its own.
"""

from __future__ import annotations

import contextlib
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

    def encoded(self) -> bytes:
        return orjson.dumps(self.data)


class Spool:
    """The bounded, durable queue of a node's events."""

    def __init__(self, path: Path, max_events: int) -> None:
        if max_events < 2:
            raise ValueError(f"a spool holds at least 2 events, got {max_events}")
        self.path = path
        self.max_events = max_events
        self._db = _open(path)
        self.spool_id = self._setting("spool") or self._new_setting("spool", uuid.uuid4().hex)
        self._next_seq, self.count = 1, 0
        self._reread()
        #: events dropped since the spool was opened (for the log)
        self.dropped = 0

    def append(self, events: list[NewEvent], lost: int = 0) -> int:
        """Store ``events`` in one fsynced transaction; ``lost`` (dropped before they
        reached the spool) is counted in the ``spool.dropped`` event.  Returns how many
        were dropped, the oldest first, to keep within ``max_events``."""
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

    def _reread(self) -> None:
        self._next_seq = int(self._setting("next_seq") or "1")
        self.count = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

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
                deleted = self._db.execute("DELETE FROM events WHERE seq <= ?", (acked,)).rowcount
        finally:
            self._db.execute("PRAGMA synchronous=FULL")
        self.count -= deleted

    def close(self) -> None:
        self._db.close()

    def _insert(self, kind: str, at: float, data: bytes, fnc_id: str | None) -> None:
        self._db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)", (self._next_seq, kind, at, data, fnc_id)
        )
        self._next_seq += 1
        self.count += 1

    def _drop_oldest(self, lost: int) -> int:
        """Make room: delete the oldest events past the bound (and one more for the
        ``spool.dropped`` event that says so)."""
        excess = self.count - self.max_events
        if excess <= 0 and lost == 0:
            return 0
        over = max(excess + 1, 0)  # room for the spool.dropped event too
        if over:
            self._db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)",
                (over,),
            )
            self.count -= over
        self.dropped += over + lost
        data = orjson.dumps({"count": over + lost, "max_events": self.max_events})
        self._insert(SPOOL_DROPPED, time.time(), data, None)
        return over

    def _setting(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _new_setting(self, name: str, value: str) -> str:
        with self._db:
            self._db.execute("INSERT INTO settings VALUES (?, ?)", (name, value))
        return value


def _open(path: Path) -> sqlite3.Connection:
    """The spool's database; a damaged file is set aside (``.damaged``) for a new one."""
    try:
        return _connect(path)
    except sqlite3.DatabaseError:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name(path.name + ".damaged"))
        return _connect(path)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except sqlite3.DatabaseError:
        db.close()
        raise
    db.isolation_level = "DEFERRED"  # ``with db`` is then one transaction
    return db
