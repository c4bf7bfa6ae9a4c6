"""One masterd per SQLite file: an exclusive ``flock`` on ``<file>.lock`` beside it.

The kernel lets the lock go when its holder exits, however it exits, so a masterd that
was SIGKILLed never keeps the next one from starting (PROTOCOL.md: "a lock that dies with
it").  The holder's pid is written in the file, for the refused one's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class StoreInUse(OSError):
    """Raised when another running masterd holds the SQLite file."""


class StoreLock:
    """The held lock; :meth:`release` lets it go (exiting does too)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hold_store_file(database: Path) -> StoreLock:
    """Lock ``database`` for this process; :class:`StoreInUse` names the holder."""
    path = database.with_name(database.name + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _pid_in(fd)
        os.close(fd)
        raise StoreInUse(
            f"the store {database} is in use by another ganeti-masterd"
            f"{f' (pid {holder})' if holder else ''}: an SQLite store serves one masterd; "
            "give this one its own --store, or share a PostgreSQL store between them"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StoreLock(fd)


def _pid_in(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 32, 0).decode().strip()
    return ""
