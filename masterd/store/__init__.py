"""masterd's store: one interface (:class:`~masterd.store.base.Store`), one backend per
URL scheme: ``sqlite:///ABS/PATH`` (one masterd), ``postgresql://USER@HOST:PORT/DB``
(any number of masterd on one database)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from masterd.store.base import Store

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


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
    if url.startswith(POSTGRES_PREFIXES):
        try:
            urlsplit(url).port  # noqa: B018 (a port that is not a number raises)
        except ValueError:
            raise ValueError(
                f"--store {url!r}: expected postgresql://USER@HOST:PORT/DB (a numeric "
                "port), e.g. postgresql://masterd@db.example.com:5432/masterd"
            ) from None
        return
    sqlite_path(url)


def store_for(url: str, *, lease_s: float = 15.0) -> Store:
    """The store of a URL, not yet opened; ``lease_s``: a shared store's jobs go to
    another masterd once their owner's row is this old."""
    check_url(url)
    if url.startswith(POSTGRES_PREFIXES):
        from masterd.store.postgres import PostgresStore

        return PostgresStore(url, lease_s=lease_s)
    from masterd.store.sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(url))
