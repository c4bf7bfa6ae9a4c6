"""Taking over from a daemon that stopped with calls running: what its journal says ran
is killed (its process group, or its cgroup), and each such call is remembered as lost,
so that a master asking for it is told why, and a master resending its request_id gets
no second run (:mod:`noded.calls.lost`).

A start record is checked when read (:mod:`noded.calls.records`: its pid is its fnc_id's
process, > 1); one that would still have this daemon signal itself, its own process
group or its session is refused here, logged, and nothing is signalled for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from noded.calls.journal import Leftover
from noded.calls.lost import LostCall
from noded.calls.table import CallTable, lost_in_a_crash
from noded.process.leftovers import kill_leftover_group
from noded.process.tree import CallTrees
from rpc_client.logs import event

log = logging.getLogger("noded.journal")


def kill_leftovers(
    leftovers: Sequence[Leftover],
    trees: CallTrees,
    calls: CallTable,
    daemon_pid: int,
    lost_at: float,
    on_lost: Callable[[Leftover, str], None] | None = None,
) -> tuple[int, list[LostCall]]:
    """Kill what is left of each call; returns how many were still running, and the
    lost calls that had a request_id.  ``on_lost(leftover, why)`` is told of each (the
    audit log's ``end``)."""
    leftovers = [left for left in leftovers if _may_signal(left, daemon_pid)]
    trees_left = trees.kill_leftovers(
        [(left.pid, left.pid_birth, left.cgroup) for left in leftovers]
    )
    killed = 0
    lost: list[LostCall] = []
    for leftover in leftovers:
        was_running = kill_leftover_group(leftover.pid, leftover.pid_birth)
        was_running = was_running or leftover.pid in trees_left
        killed += was_running
        why = lost_in_a_crash(was_running, daemon_pid)
        calls.remember_lost(leftover.fnc_id, why)
        if on_lost is not None:
            on_lost(leftover, why)
        if leftover.request_id is not None:
            lost.append(_lost(leftover, why, lost_at))
    return killed, lost


def _may_signal(leftover: Leftover, daemon_pid: int) -> bool:
    """False (and said) for a record naming this daemon, its group or its session."""
    own = {daemon_pid, os.getpgid(0), os.getsid(0)}
    if leftover.pid > 1 and leftover.pid not in own:
        return True
    why = f"field 'pid' ({leftover.pid}) is this daemon's own process, group or session"
    event(log, "journal.bad_record", logging.WARNING, fnc_id=leftover.fnc_id, why=why)
    return False


def _lost(leftover: Leftover, why: str, lost_at: float) -> LostCall:
    assert leftover.request_id is not None
    return LostCall(
        fnc_id=leftover.fnc_id,
        fn_name=leftover.fn_name,
        request_id=leftover.request_id,
        owner=leftover.owner,
        digest=leftover.digest,
        lost_at=lost_at,
        why=why,
    )
