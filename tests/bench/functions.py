"""Functions the benchmark's daemons load."""

from __future__ import annotations

import time

from noded import function


@function
def stamp(delay: float) -> float:
    """Sleep ``delay`` seconds, then return the wall-clock time just before the result."""
    time.sleep(delay)
    return time.time()


@function
def tick(lines: int, interval_s: float) -> int:
    """Print the wall-clock time ``lines`` times, ``interval_s`` apart."""
    for _ in range(lines):
        print(repr(time.time()))
        time.sleep(interval_s)
    return lines


@function
def flood(megabytes: int) -> int:
    """Write ``megabytes`` MiB to stdout as fast as the daemon takes them."""
    import os

    chunk = b"x" * (1 << 16)
    for _ in range(megabytes * 16):
        view = memoryview(chunk)
        while view:
            view = view[os.write(1, view) :]
    return megabytes
