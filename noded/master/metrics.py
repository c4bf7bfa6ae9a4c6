"""The master side's metrics, in the daemon's registry (``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class MasterMetrics:
    """Whether the node is registered, and its events on their way to the masters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.registered = Gauge(
            "noded_master_registered", "1 while a master has this node registered", registry=r
        )
        self.pending = Gauge(
            "noded_master_events_pending",
            "Events not yet acknowledged by a master (in the spool, or on their way to it)",
            registry=r,
        )
        self.delivered = Counter(
            "noded_master_events_delivered", "Events a master acknowledged", registry=r
        )
        self.dropped = Counter(
            "noded_master_events_dropped",
            "Events dropped: from a full spool, the oldest first (--spool-max-events, "
            "--spool-max-bytes), or not spooled for a full disk",
            registry=r,
        )
        self.failures = Counter(
            "noded_master_requests_failed",
            "Register, Heartbeat and Report requests no master answered, or answered with an error",
            ["procedure"],
            registry=r,
        )

    def count_pending(self, pending: Callable[[], int]) -> None:
        self.pending.set_function(pending)
