"""One masterd per SQLite file: an exclusive ``flock`` on ``<file>.lock`` beside it.

The kernel lets the lock go when its holder exits, however it exits, so a masterd that
was SIGKILLed never keeps the next one from starting (PROTOCOL.md: "a lock that dies with
it").  The holder's pid is written in the file, for the refused one's message.
"""

from __future__ import annotations

from pathlib import Path

from rpc_client.file_locks import HeldLock, LockHeld, hold_pid_file


class StoreInUse(OSError):
    """Raised when another running masterd holds the SQLite file."""


#: the held lock; ``release()`` lets it go (exiting does too)
StoreLock = HeldLock


def hold_store_file(database: Path) -> StoreLock:
    """Lock ``database`` for this process; :class:`StoreInUse` names the holder."""
    try:
        return hold_pid_file(database.with_name(database.name + ".lock"))
    except LockHeld as held:
        holder = held.holder
        raise StoreInUse(
            f"the store {database} is in use by another ganeti-masterd"
            f"{f' (pid {holder})' if holder else ''}: an SQLite store serves one masterd; "
            "give this one its own --store, or share a PostgreSQL store between them"
        ) from None
