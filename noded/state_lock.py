"""One daemon per state directory: an exclusive lock on ``STATE_DIR/daemon.lock``, held
for the daemon's life.

Two daemons on one state directory would append to one journal, each take the other's
running calls for a crashed daemon's leftovers, and share a node uuid.  The lock is a
``flock``: the kernel lets it go when the daemon exits, however it exits, so a daemon
that crashed never keeps the next one from starting.  Its descriptor is not inherited:
the fork server and the function processes do not hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = "daemon.lock"


class StateDirectoryInUse(OSError):
    """Raised when another running daemon holds the state directory's lock."""


class StateLock:
    """The held lock; :meth:`release` lets it go (exiting does too)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hold_state_directory(state_dir: Path) -> StateLock:
    """Lock ``state_dir`` for this daemon (made if missing) and write our pid in the lock
    file, for the next daemon's message.

    Raises :class:`StateDirectoryInUse` naming the daemon that holds it.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _pid_in(fd)
        os.close(fd)
        raise StateDirectoryInUse(
            f"the state directory {state_dir} is in use by another ganeti-noded"
            f"{f' (pid {holder})' if holder else ''}; give each daemon its own --state-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateLock(fd)


def _pid_in(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 32, 0).decode().strip()
    return ""
