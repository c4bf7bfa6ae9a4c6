"""Prometheus metrics of one daemon, served at ``GET /metrics``.

A registry per daemon (not prometheus-client's global one), so that nothing else in the
process can add to or clash with it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

_DURATION_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)


class Metrics:
    """The counters, gauges and histograms the daemon keeps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_started = Counter(
            "noded_calls_started", "Function calls started", ["fn_name"], registry=r
        )
        self.calls_finished = Counter(
            "noded_calls_finished",
            "Function calls finished, by outcome (ok or error type)",
            ["fn_name", "outcome"],
            registry=r,
        )
        self.call_duration = Histogram(
            "noded_call_duration_seconds",
            "From start to result",
            ["fn_name"],
            buckets=_DURATION_BUCKETS_S,
            registry=r,
        )
        self.running = Gauge("noded_functions_running", "Function calls running", registry=r)
        self.retained = Gauge("noded_results_retained", "Finished calls kept", registry=r)
        self.aborts = Counter(
            "noded_aborts",
            "Calls aborted, by reason (aborted, abort_after, shutdown)",
            ["reason"],
            registry=r,
        )
        self.kills = Counter("noded_kills", "Process groups that needed SIGKILL", registry=r)
        self.zygote_restarts = Counter(
            "noded_zygote_restarts", "Fork servers started again after one died", registry=r
        )
        self.rejections = Counter(
            "noded_limit_rejections", "Requests refused at a limit",
            ["limit"], registry=r)  # fmt: skip

    def render(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
