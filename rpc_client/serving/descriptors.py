"""How many file descriptors the daemon may still open, so that it takes in only the
connections and calls it has descriptors for, and answers the rest ``503 Busy``.

Counting the open descriptors (a listing of ``/proc/self/fd``) costs about 2 us per
descriptor, far too much for every request of a busy daemon.  So the budget keeps an
estimate: the free descriptors at the last look, less what was admitted since.  It looks
again only when the estimate runs low (or once a second): first at the kernel's
descriptor table size (``FDSize``, a cheap upper bound of how many are open), and only
if that is not enough, at the list itself.  A daemon far from its limit therefore never
lists its descriptors; one near it looks at every admission.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from typing import Any, Protocol

from rpc_client.errors import NodeBusy
from rpc_client.logs import RateLimit, event

log = logging.getLogger("rpc_client.serving")

#: descriptors a function call holds in the daemon at most while it starts: its stdin,
#: stdout, stderr and result pipes, its pidfd, its output file, and some slack
CALL_DESCRIPTORS = 8
#: descriptors start-up opens and keeps, besides those of spare processes (the journal,
#: the listening socket, the event loop, the fork server's pipes, the spool, the audit
#: log: 14 measured), for the check before anything starts
STARTUP_DESCRIPTORS = 16
#: descriptors each spare process holds in the daemon (its pidfd and pipes: 5 measured)
SPARE_DESCRIPTORS = 5
#: seconds a client is told to wait (Retry-After) when descriptors are short
RETRY_AFTER_S = 1
#: look again after this long even if the estimate says there is room
_LOOK_EVERY_S = 1.0
_LOG_EVERY_S = 1.0


def open_descriptors() -> int:
    """How many descriptors this process has open (exact, and costly: see above)."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own


class LabelledCounter(Protocol):
    """A Prometheus counter with labels (``prometheus_client.Counter``)."""

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any: ...


class DoorMetrics(Protocol):
    """What a daemon counts at its door: requests refused at a limit (by limit: here
    ``descriptors``), and refused TLS handshakes (by reason)."""

    @property
    def rejections(self) -> LabelledCounter: ...

    @property
    def tls_failures(self) -> LabelledCounter: ...


class DescriptorTable:
    """The size of this process's descriptor table (``FDSize``): at least one more than
    its highest open descriptor, so at least how many it has open.  Read from a file kept
    open, so that reading it needs no descriptor of its own."""

    def __init__(self) -> None:
        self._status = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)

    def __call__(self) -> int:
        text = os.pread(self._status, 8192, 0)
        start = text.index(b"FDSize:") + len(b"FDSize:")
        return int(text[start : text.index(b"\n", start)])


def soft_open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit, at start: every connection holds a
    descriptor (and in ganeti-noded every running call several)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class DescriptorsTooFew(ValueError):
    """Raised at start when RLIMIT_NOFILE cannot hold what the daemon holds at rest, the
    reserve, and one call with its connection: such a daemon would answer every request
    ``503 Busy``, Identify included, and never serve."""


def check_budget_can_be_met(reserve: int, in_use: int, limit: int | None = None) -> None:
    """``DescriptorsTooFew`` unless ``limit`` (the soft RLIMIT_NOFILE) holds ``in_use``
    descriptors, ``reserve``, and one call (:data:`CALL_DESCRIPTORS`) on one connection."""
    limit = soft_open_files_limit() if limit is None else limit
    needed = in_use + reserve + CALL_DESCRIPTORS + 1
    if limit < needed:
        raise DescriptorsTooFew(
            f"RLIMIT_NOFILE is {limit}, but the daemon holds {in_use} file descriptors, "
            f"keeps --descriptor-reserve {reserve} free, and needs {CALL_DESCRIPTORS + 1} "
            f"for one call and its connection: at least {needed}. Raise the limit "
            "(LimitNOFILE= in the unit, ulimit -n; the soft limit is raised to the hard one "
            "at start) or lower --descriptor-reserve"
        )


class DescriptorBudget:
    """Admits connections and calls while descriptors remain for them.

    ``reserve``: descriptors a call must leave free (for the journal, the audit log, output
    files, and the connections that wait for calls); a connection must leave a quarter of
    it.  So calls are refused first, with a proper answer on a working connection, and
    connections only when even that could not be given."""

    def __init__(
        self,
        reserve: int,
        metrics: DoorMetrics,
        *,
        limit: int | None = None,
        count: Callable[[], int] = open_descriptors,
        bound: Callable[[], int] | None = None,
    ) -> None:
        self.reserve = reserve
        self.limit = limit if limit is not None else soft_open_files_limit()
        self._metrics = metrics
        self._count, self._bound = count, bound or DescriptorTable()
        self._free = 0  # unknown until the first look
        self._looked_at = float("-inf")
        self._refusals = RateLimit(_LOG_EVERY_S)

    @property
    def connection_reserve(self) -> int:
        return max(1, self.reserve // 4)

    def admit_call(self) -> None:
        """Spend a call's descriptors, or raise ``NodeBusy`` (503, Retry-After)."""
        if not self.admit(CALL_DESCRIPTORS, self.reserve):
            self._refused("call")
            raise NodeBusy(
                f"the node is short of file descriptors (RLIMIT_NOFILE {self.limit}, fewer "
                f"than {CALL_DESCRIPTORS + self.reserve} free; ganeti-noded "
                "--descriptor-reserve); retry later",
                retry_after_s=RETRY_AFTER_S,
            )

    def admit_connection(self) -> bool:
        """Spend a connection's descriptor; False (counted, logged) if it would leave
        too few."""
        if self.admit(1, self.connection_reserve):
            return True
        self._refused("connection")
        return False

    def admit(self, need: int, keep: int) -> bool:
        """Spend ``need`` descriptors if ``keep`` remain free after them."""
        if self._free - need < keep or time.monotonic() - self._looked_at > _LOOK_EVERY_S:
            self._look(need + keep)
        if self._free - need < keep:
            return False
        self._free -= need
        return True

    def _look(self, wanted: int) -> None:
        """The free descriptors: by the table size when that shows enough, else counted
        (with none left to list them, none)."""
        self._looked_at = time.monotonic()
        try:
            self._free = self.limit - self._bound()
            if self._free < max(wanted, self.limit // 4):
                self._free = self.limit - self._count()
        except OSError:
            self._free = 0

    def refused_connection(self) -> None:
        """``accept`` failed for want of a descriptor: counted, logged, and the next
        admission looks again (the estimate was wrong)."""
        self._looked_at = float("-inf")
        self._free = 0
        self._refused("connection")

    def _refused(self, what: str) -> None:
        self._metrics.rejections.labels("descriptors").inc()
        if self._refusals.allow():
            event(log, "limit.descriptors", logging.WARNING, refused=what, free=self._free,
                  limit=self.limit, reserve=self.reserve,
                  suppressed=self._refusals.take_suppressed())  # fmt: skip
