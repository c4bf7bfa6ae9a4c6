"""masterd's store: one interface (:class:`~masterd.store.base.Store`), one backend per
URL scheme.  ``sqlite:///ABS/PATH`` now; ``postgresql://...`` next (issue 32)."""

from __future__ import annotations

from pathlib import Path

from masterd.store.base import Store

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///ABS/PATH`` (SQLAlchemy's spelling: four slashes before an
    absolute path); ``ValueError`` for anything else."""
    if not url.startswith(SQLITE_PREFIX + "/"):
        raise ValueError(
            f"--store {url!r}: expected sqlite:////ABSOLUTE/PATH (four slashes, as "
            "SQLAlchemy writes it), e.g. sqlite:////var/lib/ganeti-masterd/masterd.sqlite3"
        )
    return Path(url.removeprefix(SQLITE_PREFIX))


def check_url(url: str) -> None:
    """``ValueError`` saying what is wrong with a --store URL."""
    if url.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "--store postgresql://... is not built yet (issue 32); use sqlite:////PATH"
        )
    sqlite_path(url)


def store_for(url: str) -> Store:
    """The store of a URL, not yet opened."""
    check_url(url)
    from masterd.store.sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(url))
