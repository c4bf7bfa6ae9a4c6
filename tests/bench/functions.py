"""Functions the benchmark's daemons load."""

from __future__ import annotations

import time

from noded import function


@function
def stamp(delay: float) -> float:
    """Sleep ``delay`` seconds, then return the wall-clock time just before the result."""
    time.sleep(delay)
    return time.time()
