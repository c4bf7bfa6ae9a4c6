"""Numbered schema migrations: ``migrations/<dialect>/NNNN_name.sql``, applied in order.

Each backend has its dialect's directory with the same numbers (``0001_initial.sql`` is
the same schema in SQLite's and, later, PostgreSQL's words).  The table
``schema_migrations`` says which are applied; a store whose schema is newer than this
masterd knows is refused rather than written to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

#: made before any migration, in every dialect
SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied REAL NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    """The dialect's migrations in order; raises ``ValueError`` on a gap or a bad name."""
    folder = resources.files("masterd.store") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise ValueError(f"migration {entry.name}: expected NNNN_name.sql")
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda migration: migration.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"{dialect} migrations are not numbered 1, 2, ... without gaps")
    return found


def pending(dialect: str, applied: int) -> list[Migration]:
    """Those after ``applied``; ``ValueError`` if the store is newer than this code."""
    known = migrations(dialect)
    if applied > len(known):
        raise ValueError(
            f"the store's schema is at version {applied}, newer than this ganeti-masterd "
            f"knows ({len(known)}): run the newer ganeti-masterd, or another store"
        )
    return known[applied:]
