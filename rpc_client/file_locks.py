"""Exclusive ``flock``s that name their holder, for both daemons and the master's tools.

A ``flock`` dies with its holder, however it exits, so a crashed process never keeps the
next from starting.  Who holds one is read from ``/proc/locks`` (:func:`flock_holder`),
or, for a lock file of its own, from the pid its holder wrote in it
(:func:`hold_pid_file`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class LockHeld(OSError):
    """Raised when another process holds the lock; ``holder`` is its pid ("" if unknown)."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"held by pid {holder}" if holder else "held by another process")
        self.holder = holder


class HeldLock:
    """A held lock; :meth:`release` lets it go (exiting does too)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hold_pid_file(path: Path) -> HeldLock:
    """Lock the file at ``path`` (made if missing; not inherited by children) and write
    this process's pid in it, for the next one's message; :class:`LockHeld` if another
    process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _pid_in(fd)
        os.close(fd)
        raise LockHeld(holder) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return HeldLock(fd)


def _pid_in(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 32, 0).decode().strip()
    return ""


def flock_holder(info: os.stat_result) -> int | None:
    """The pid holding a ``flock`` on the file ``info`` describes, from ``/proc/locks``
    (device and inode; the inode alone where the file system reports another device, as
    overlayfs does), or None."""
    try:
        with open("/proc/locks") as locks:
            lines = [line.split() for line in locks]
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    held = [(f[5], int(f[4])) for f in lines if len(f) > 5 and f[1] == "FLOCK"]
    exact = [pid for where, pid in held if where == device]
    inode = [pid for where, pid in held if where.endswith(f":{info.st_ino}")]
    if exact:
        return exact[0]
    return inode[0] if len(inode) == 1 else None
