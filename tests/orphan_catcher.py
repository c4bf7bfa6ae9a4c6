"""What a stopped daemon leaves to init: run as ``python -m tests.orphan_catcher ARGS...``.

This process makes itself the child subreaper of everything it starts, so that a process
the daemon's tree abandons (an orphan, or the zombie of one) becomes its child instead of
init's.  It starts a daemon with ``ARGS``, waits for its spare children, stops it with
SIGTERM, then reaps (or kills, if still running after a while) whatever was left to it,
and prints ``{"status": ..., "spares": [...], "orphans": [...]}`` as JSON.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import sys
import time

import psutil

from tests.helpers import eventually, run_node, zygote_of

PR_SET_CHILD_SUBREAPER = 36
_SETTLE_S = 2.0


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


async def run_and_stop(args: list[str]) -> tuple[int | None, list[int]]:
    """Start a daemon, wait for its spares, SIGTERM it: its exit status and the spares."""
    async with run_node(args) as node:
        spares = await spares_of(node.pid)
        node.signal(signal.SIGTERM)
        return await node.wait_exit(20), spares


async def spares_of(daemon_pid: int) -> list[int]:
    """The children of the daemon's fork server, once there are some."""
    zygote = zygote_of(daemon_pid)
    await eventually(lambda: bool(zygote.children()))
    return [spare.pid for spare in zygote.children()]


def collect_orphans() -> list[int]:
    """The pids left to this process: reaped as they exit, killed if still running."""
    found: set[int] = set()
    end = time.monotonic() + _SETTLE_S
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no child left at all
            return sorted(found)
        if pid:
            found.add(pid)
        else:
            time.sleep(0.02)
    for child in psutil.Process().children():
        found.add(child.pid)
        child.kill()
        child.wait(5)
    return sorted(found)


def main(args: list[str]) -> None:
    become_subreaper()
    status, spares = asyncio.run(run_and_stop(args))
    print(json.dumps({"status": status, "spares": spares, "orphans": collect_orphans()}))


if __name__ == "__main__":
    main(sys.argv[1:])
