"""Prometheus metrics of one ganeti-masterd, served at ``GET /metrics`` (a registry of
its own, as noded's)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class MasterdMetrics:
    """The counters and gauges masterd keeps."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "masterd_requests", "Requests answered, by procedure and status",
            ["procedure", "status"], registry=r)  # fmt: skip
        self._request_children: dict[tuple[str, int], Counter] = {}
        self.registrations = Counter("masterd_registrations", "Register calls stored",
                                     registry=r)  # fmt: skip
        self.heartbeats = Counter("masterd_heartbeats", "Heartbeats received", registry=r)
        self.events_stored = Counter(
            "masterd_events_stored", "Events stored (from nodes and masterd's own)", registry=r
        )
        self.reports_refused = Counter(
            "masterd_reports_refused",
            "Reports refused at a limit (too_many_events, concurrent, rate)",
            ["reason"], registry=r)  # fmt: skip
        self.store_errors = Counter(
            "masterd_store_errors", "Store operations that failed, by error type",
            ["type"], registry=r)  # fmt: skip
        self.commands = Counter(
            "masterd_commands", "Master commands run (CallMaster), by command and outcome "
            "(ok, error, timeout)", ["command", "outcome"], registry=r)  # fmt: skip
        self.nodes = Gauge("masterd_nodes", "Nodes by state", ["state"], registry=r)
        self.rejections = Counter(
            "masterd_limit_rejections", "Requests refused at a limit", ["limit"], registry=r
        )
        self.tls_failures = Counter(
            "masterd_tls_handshake_failures", "TLS handshakes refused or broken, by reason",
            ["reason"], registry=r)  # fmt: skip

    def count_request(self, procedure: str, status: int) -> None:
        """One answered request.  Each (procedure, status) child is looked up once: a
        ``labels()`` call per request was a tenth of masterd's own CPU per heartbeat."""
        child = self._request_children.get((procedure, status))
        if child is None:
            child = self.requests.labels(procedure, str(status))
            self._request_children[(procedure, status)] = child
        child.inc()

    def count_nodes(self, counts: Callable[[], dict[str, int]]) -> None:
        """Read the nodes by state when scraped."""
        for state in ("alive", "missing", "unknown"):
            self.nodes.labels(state).set_function(_count_of(counts, state))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _count_of(counts: Callable[[], dict[str, int]], state: str) -> Callable[[], float]:
    return lambda: counts()[state]
