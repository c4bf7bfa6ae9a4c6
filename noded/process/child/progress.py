"""``progress()``: a function's reports of how far it got, sent to the daemon.

Reports travel on the frame channel (fd 3 of a function process), as lines before the
result frame.  Sending is cheap (one ``write`` of a short line, no answer awaited), and
coalesced: at most one report every :data:`MIN_INTERVAL_S`; a report made sooner waits
for that moment in a timer thread, replaced by any later one, and the last report is
always sent before the result.  Outside a function process it does nothing, so a
function can be called directly in its own unit tests.
"""

from __future__ import annotations

import _thread
import math
import os
import time
from typing import TYPE_CHECKING

from noded.process.child import frames

if TYPE_CHECKING:
    import threading

MIN_INTERVAL_S = 0.05
MAX_MESSAGE_CHARS = 1000

#: the frame channel's descriptor; set by the runner in a function process
channel_fd = -1
#: not threading's: importing threading in the fork server costs every child its
#: after-fork hooks (0.4 MiB of pages each); it is imported when a timer is needed
_lock = _thread.allocate_lock()
_last_sent = -math.inf
_pending: bytes | None = None
_timer: threading.Timer | None = None


def progress(fraction: float | None = None, message: str = "") -> None:
    """Report progress: ``fraction`` of the work done (0 to 1, or None if unknown) and a
    message for the operator (cut to 1,000 characters)."""
    global _pending, _timer
    line = frames.encode_progress(_checked(fraction), str(message)[:MAX_MESSAGE_CHARS])
    if channel_fd < 0:
        return
    with _lock:
        wait_s = _last_sent + MIN_INTERVAL_S - time.monotonic()
        if wait_s <= 0 and _timer is None:
            _send(line)
            return
        _pending = line
        if _timer is None:
            import threading

            _timer = threading.Timer(max(wait_s, 0.0), _send_pending)
            _timer.daemon = True
            _timer.start()


def flush() -> None:
    """Send the report still waiting, if any (before the result frame)."""
    global _timer
    with _lock:
        if _timer is not None:
            _timer.cancel()
            _timer = None
        _send_waiting()


def _send_pending() -> None:
    global _timer
    with _lock:
        _timer = None
        _send_waiting()


def _send_waiting() -> None:
    global _pending
    if _pending is not None:
        line, _pending = _pending, None
        _send(line)


def _send(line: bytes) -> None:
    global _last_sent
    _last_sent = time.monotonic()
    view = memoryview(line)
    while view:
        view = view[os.write(channel_fd, view) :]


def _checked(fraction: float | None) -> float | None:
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress fraction must be a number or None, got {fraction!r}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"progress fraction must be between 0 and 1, got {fraction!r}")
    return float(fraction)
