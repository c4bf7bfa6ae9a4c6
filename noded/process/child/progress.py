"""``progress()``: a function's reports of how far it got, sent to the daemon.

Reports travel on the frame channel (fd 3 of a function process), as lines before the
result frame.  Sending is cheap (one ``write`` of a short line, no answer awaited), and
coalesced: at most one report every :data:`MIN_INTERVAL_S`; a report made sooner waits
for that moment in a timer thread, replaced by any later one, and the last report is
always sent before the result.  Outside a function process it does nothing, so a
function can be called directly in its own unit tests.

Every line on the channel, the result frame included (:func:`write_last`), is written
under one lock: a report from another thread never lands inside a frame that takes many
writes (a large result), and reports made after the result are dropped.
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
        if channel_fd < 0:  # the result went while we waited for the lock
            return
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
    with _lock:
        _flush_locked()


def send_line(line: bytes) -> bool:
    """Send ``line`` (an event) now, after the report still waiting; False if the
    channel is closed (the result went, or this is not a function process)."""
    with _lock:
        if channel_fd < 0:
            return False
        _flush_locked()
        _write(channel_fd, line)
        return True


def write_last(frame: bytes) -> None:
    """Send the report still waiting, then ``frame`` (the result), the channel's last
    line: no report from another thread can come between its writes or after it.

    Raises ``OSError`` if the channel cannot be written (the function closed fd 3)."""
    global channel_fd
    with _lock:
        _flush_locked()
        fd, channel_fd = channel_fd, -1
        _write(fd, frame)


def _flush_locked() -> None:
    global _timer
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
    if _pending is not None and channel_fd >= 0:
        line, _pending = _pending, None
        _send(line)


def _send(line: bytes) -> None:
    global _last_sent
    _last_sent = time.monotonic()
    _write(channel_fd, line)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _checked(fraction: float | None) -> float | None:
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress fraction must be a number or None, got {fraction!r}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"progress fraction must be between 0 and 1, got {fraction!r}")
    return float(fraction)
