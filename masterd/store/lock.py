"""One masterd per SQLite file: an exclusive ``flock`` on the database file itself, and
one on ``<file>.lock`` beside it.

The lock on the file itself is what keeps a second masterd out: a ``flock`` belongs to
the file (its inode), not to the path it was opened by, so a second masterd reaching the
file through a symlink, a hard link or any other spelling of its path meets it.  (SQLite
locks with ``fcntl``, which on Linux is apart from ``flock``: the two do not meet.  The
descriptor stays open until the store's connections are closed, as closing a descriptor
of the file would drop SQLite's own locks.)  ``<file>.lock`` holds the holder's pid, for
the refused one's message; reached by another path, the holder is read from
``/proc/locks``.

The kernel lets the locks go when their holder exits, however it exits, so a masterd
that was SIGKILLed never keeps the next one from starting (PROTOCOL.md: "a lock that
dies with it").
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from rpc_client.file_locks import HeldLock, LockHeld, flock_holder, hold_pid_file


class StoreInUse(OSError):
    """Raised when another running masterd holds the SQLite file."""


class StoreLock:
    """The held locks; ``release()`` lets them go (exiting does too)."""

    def __init__(self, *locks: HeldLock) -> None:
        self._locks = locks

    def release(self) -> None:
        for lock in self._locks:
            lock.release()


def hold_store_file(database: Path) -> StoreLock:
    """Lock ``database`` (made empty if missing) for this process, by every path to it;
    :class:`StoreInUse` names the holder."""
    try:
        marker = hold_pid_file(database.with_name(database.name + ".lock"))
    except LockHeld as held:
        raise _in_use(database, held.holder) from None
    try:
        return StoreLock(_hold_file(database), marker)
    except LockHeld as held:
        marker.release()
        raise _in_use(database, held.holder) from None
    except BaseException:
        marker.release()
        raise


def _hold_file(database: Path) -> HeldLock:
    fd = os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = flock_holder(os.fstat(fd))
        os.close(fd)
        raise LockHeld(str(holder or "")) from None
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(fd)


def _in_use(database: Path, holder: str) -> StoreInUse:
    return StoreInUse(
        f"the store {database} is in use by another ganeti-masterd"
        f"{f' (pid {holder})' if holder else ''}: an SQLite store serves one masterd; "
        "give this one its own --store, or share a PostgreSQL store between them"
    )
