"""Taking over from a daemon that stopped with calls running: what its journal says ran
is killed (its process group, or its cgroup), and each such call is remembered as lost,
so that a master asking for it is told why."""

from __future__ import annotations

from collections.abc import Sequence

from noded.calls.journal import Leftover
from noded.calls.table import CallTable, lost_in_a_crash
from noded.process.leftovers import kill_leftover_group
from noded.process.tree import CallTrees


def kill_leftovers(
    leftovers: Sequence[Leftover], trees: CallTrees, calls: CallTable, daemon_pid: int
) -> int:
    """Kill what is left of each call; returns how many were still running."""
    trees_left = trees.kill_leftovers(
        [(left.pid, left.pid_birth, left.cgroup) for left in leftovers]
    )
    killed = 0
    for leftover in leftovers:
        was_running = kill_leftover_group(leftover.pid, leftover.pid_birth)
        was_running = was_running or leftover.pid in trees_left
        killed += was_running
        calls.remember_lost(leftover.fnc_id, lost_in_a_crash(was_running, daemon_pid))
    return killed
