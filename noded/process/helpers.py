"""The daemon's helper processes that are not a call's: the importers of a reload and the
fork servers (one still importing, at start-up or in a reload, or one serving).

Each is in its own session and reads its socket or pipe only once its import is done, so
one busy importing does not leave when the daemon's end closes them.  They are tracked
here from their start to their reaping, so that a forced exit kills them too
(:func:`kill_all`) and nothing of the daemon is left running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

#: pid -> how to SIGKILL it (and whatever it started in its process group)
_live: dict[int, Callable[[], None]] = {}


def track(pid: int, kill: Callable[[], None]) -> None:
    """``pid`` is a helper from now until :func:`untrack` (call that before it is reaped
    or right after, before its pid can be used again)."""
    _live[pid] = kill


def untrack(pid: int) -> None:
    _live.pop(pid, None)


def kill_all() -> int:
    """SIGKILL every helper still tracked; how many there were."""
    killers = list(_live.values())
    _live.clear()
    for kill in killers:
        with contextlib.suppress(OSError):  # it exited meanwhile
            kill()
    return len(killers)
