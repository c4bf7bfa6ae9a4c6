"""The function the emit-latency bench (``tests/bench/emit_latency.py``) runs on its node."""

from __future__ import annotations

import time

from noded import emit, function


@function
def emit_pings(count: int, interval_s: float, kind: str = "bench.ping") -> int:
    """``count`` events of ``kind``, ``interval_s`` apart, each carrying its wall-clock
    ``sent`` time."""
    for _ in range(count):
        emit(kind, {"sent": time.time()})
        time.sleep(interval_s)
    return count
