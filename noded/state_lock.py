"""One daemon per state directory: an exclusive lock on ``STATE_DIR/daemon.lock``, held
for the daemon's life.

Two daemons on one state directory would append to one journal, each take the other's
running calls for a crashed daemon's leftovers, and share a node uuid.  The lock is a
``flock``: the kernel lets it go when the daemon exits, however it exits, so a daemon
that crashed never keeps the next one from starting.  Its descriptor is not inherited:
the fork server and the function processes do not hold it.
"""

from __future__ import annotations

from pathlib import Path

from rpc_client.file_locks import HeldLock, LockHeld, hold_pid_file

LOCK_FILE = "daemon.lock"


class StateDirectoryInUse(OSError):
    """Raised when another running daemon holds the state directory's lock."""


#: the held lock; ``release()`` lets it go (exiting does too)
StateLock = HeldLock


def hold_state_directory(state_dir: Path) -> StateLock:
    """Lock ``state_dir`` for this daemon (made if missing) and write our pid in the lock
    file, for the next daemon's message.

    Raises :class:`StateDirectoryInUse` naming the daemon that holds it.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return hold_pid_file(state_dir / LOCK_FILE)
    except LockHeld as held:
        holder = held.holder
        raise StateDirectoryInUse(
            f"the state directory {state_dir} is in use by another ganeti-noded"
            f"{f' (pid {holder})' if holder else ''}; give each daemon its own --state-dir"
        ) from None
