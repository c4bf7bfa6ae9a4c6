"""Processes the daemon did not start in this life: a crashed daemon's leftovers."""

from __future__ import annotations

import errno
import os
import signal

import psutil


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started (psutil's create_time), to recognise it after a restart."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def kill_leftover_group(pid: int, start_time: float | None) -> bool:
    """SIGKILL the process group a crashed daemon left behind; True if one was there.

    The group id is the old leader's pid.  It is ours to kill if the leader still runs
    with the recorded start time, or if the leader is gone but its group still has
    members: a pid in use as a group id is never given to a new process, so such a group
    can only be the old one.  If the pid now belongs to another process, the old group
    is gone, and nothing is signalled.
    """
    now = process_start_time(pid)
    if now is not None and (start_time is None or abs(now - start_time) > 0.01):
        return False  # recycled pid: the old group no longer exists
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def is_resource_shortage(exc: OSError) -> bool:
    """True for spawn failures that go away with time (no fds, no pids, no memory)."""
    return exc.errno in (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM)
