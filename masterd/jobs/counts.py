"""A running job's nodes by outcome, kept in memory as its records are committed.

WaitForJob answers a job's ``counts`` with every answer.  Counting them in the store is a
read of all the job's rows (O(N) an answer, O(N^2) over a job that is followed); the job
running here keeps them instead: a node moves from ``pending`` to ``running`` once its
start is committed, and to its outcome once its end is.  A job not running in this
masterd (ended, or another master's) is counted in the store
(:meth:`~masterd.store.base.Store.job_counts`).
"""

from __future__ import annotations

from collections import Counter

from masterd.store.jobs import JobProgress
from rpc_client.job_protocol import COUNTS


class JobCounts:
    """The counts of one job, as WaitForJob answers them."""

    def __init__(self, nodes: int, progress: JobProgress) -> None:
        self._nodes = nodes
        self._ended: set[str] = set(progress.results)
        self._running: set[str] = set(progress.request_ids) - self._ended
        self._outcomes: Counter[str] = Counter(r.outcome for r in progress.results.values())

    def asked(self, node: str) -> None:
        """The node's start is committed."""
        if node not in self._ended:
            self._running.add(node)

    def ended(self, node: str, outcome: str) -> None:
        """The node's end is committed (once: the store keeps the first)."""
        if node in self._ended:
            return
        self._ended.add(node)
        self._running.discard(node)
        self._outcomes[outcome] += 1

    def as_wire(self) -> dict[str, int]:
        counts = dict.fromkeys(COUNTS, 0)
        counts.update(self._outcomes)
        counts["running"] = len(self._running)
        counts["pending"] = self._nodes - len(self._running) - len(self._ended)
        return counts
