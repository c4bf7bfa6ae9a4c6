"""Processes the daemon did not start in this life: a crashed daemon's leftovers."""

from __future__ import annotations

import errno
import functools
import os
import signal

from noded.process.child.frames import start_ticks


def process_birth(pid: int) -> str | None:
    """Which incarnation of ``pid`` this is: ``"<boot id>:<start time in clock ticks>"``.

    Equal only for the same process: a recycled pid starts later, and nothing survives a
    reboot.  Read straight from /proc (one small read, no other file), since it is taken
    for every call.
    """
    try:
        return f"{_boot_id()}:{start_ticks(pid)}"
    except (OSError, ValueError):
        return None


@functools.cache
def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as boot_id:
        return boot_id.read().strip()


def kill_leftover_group(pid: int, birth: str | None) -> bool:
    """SIGKILL the process group a crashed daemon left behind; True if one was there.

    The group id is the old leader's pid.  It is ours to kill if the leader still runs
    with the recorded ``birth`` (:func:`process_birth`), or if the leader is gone but its
    group still has members: a pid in use as a group id is never given to a new process,
    so such a group can only be the old one.  If the pid now belongs to another process,
    or the machine rebooted since, the old group is gone, and nothing is signalled.
    """
    if birth is None or not birth.startswith(f"{_boot_id()}:"):
        return False  # unknown, or from another boot: none of its processes can be left
    now = process_birth(pid)
    if now is not None and now != birth:
        return False  # recycled pid: the old group no longer exists
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def is_resource_shortage(exc: OSError) -> bool:
    """True for spawn failures that go away with time (no fds, no pids, no memory)."""
    return exc.errno in (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM)
