"""Prometheus metrics of one daemon, served at ``GET /metrics``.

A registry per daemon (not prometheus-client's global one), so that nothing else in the
process can add to or clash with it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
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
        self.retained_bytes = Gauge(
            "noded_results_retained_bytes", "Bytes of finished calls kept (--max-retained-bytes)",
            registry=r)  # fmt: skip
        self.results_dropped = Counter(
            "noded_results_dropped", "Finished calls dropped before their TTL, by limit",
            ["limit"], registry=r)  # fmt: skip
        self.aborts = Counter(
            "noded_aborts",
            "Calls aborted, by reason (aborted, abort_after, shutdown)",
            ["reason"],
            registry=r,
        )
        self.kills = Counter("noded_kills", "Process groups that needed SIGKILL", registry=r)
        self._add_output_metrics()
        self.journal_failures = Counter(
            "noded_journal_write_failures", "Journal records or rewrites that failed",
            ["record"], registry=r)  # fmt: skip
        self.denials = Counter(
            "noded_policy_denials", "Requests refused by the policy (403)",
            ["procedure"], registry=r)  # fmt: skip
        self.audit_failures = Counter(
            "noded_audit_write_failures", "Audit records or fsyncs that failed",
            ["record"], registry=r)  # fmt: skip
        self.audit_fsyncs = Counter(
            "noded_audit_fsyncs", "fsyncs of the audit log (one for starts that come together)",
            registry=r)  # fmt: skip
        self.tls_failures = Counter(
            "noded_tls_handshake_failures", "TLS handshakes refused or broken, by reason",
            ["reason"], registry=r)  # fmt: skip
        self.zygote_restarts = Counter(
            "noded_zygote_restarts", "Fork servers started again after one died", registry=r
        )
        self.rejections = Counter(
            "noded_limit_rejections", "Requests refused at a limit",
            ["limit"], registry=r)  # fmt: skip

        self._by_fn: dict[str, tuple[Any, Any]] = {}
        self._finished: dict[tuple[str, str], Any] = {}

    def _add_output_metrics(self) -> None:
        """What keeping the calls' output under the state directory costs."""
        r = self.registry
        self.output_kept = Counter(
            "noded_output_bytes_kept", "Bytes of call output written to the state directory",
            registry=r)  # fmt: skip
        self.output_dropped = Counter(
            "noded_output_bytes_dropped",
            "Bytes of call output dropped: over --max-output-bytes or "
            "--max-retained-output-bytes, or not writable",
            registry=r)  # fmt: skip
        self.output_evicted = Counter(
            "noded_output_calls_evicted",
            "Finished calls whose output was dropped to keep --max-retained-output-bytes",
            registry=r)  # fmt: skip
        self.output_on_disk = Gauge(
            "noded_output_bytes_on_disk", "Bytes of call output under the state directory",
            registry=r)  # fmt: skip

    def count_gauges(self, running: Callable[[], int], retained: Callable[[], int]) -> None:
        """Read the running and retained counts when scraped, not set on every call."""
        self.running.set_function(running)
        self.retained.set_function(retained)

    def call_started(self, fn_name: str) -> None:
        self._of_fn(fn_name)[0].inc()

    def call_finished(self, fn_name: str, outcome: str, duration_s: float) -> None:
        self._of_fn(fn_name)[1].observe(duration_s)
        key = (fn_name, outcome)
        counter = self._finished.get(key)
        if counter is None:
            counter = self._finished[key] = self.calls_finished.labels(fn_name, outcome)
        counter.inc()

    def _of_fn(self, fn_name: str) -> tuple[Any, Any]:
        # labels() costs a lock and a validation each time: keep the children per function
        children = self._by_fn.get(fn_name)
        if children is None:
            children = self._by_fn[fn_name] = (
                self.calls_started.labels(fn_name),
                self.call_duration.labels(fn_name),
            )
        return children

    def render(self, shows_fn: Callable[[str], bool] | None = None) -> bytes:
        """The Prometheus text format of every metric; with ``shows_fn``, only the
        per-function series (label ``fn_name``) of the functions it says yes to."""
        if shows_fn is None:
            return generate_latest(self.registry)
        return generate_latest(_FunctionsShown(self.registry, shows_fn))


class _FunctionsShown:
    """A registry's metrics without the series of the functions a client may not see."""

    def __init__(self, registry: CollectorRegistry, shows_fn: Callable[[str], bool]) -> None:
        self._registry = registry
        self._shows_fn = shows_fn

    def collect(self) -> Iterator[Any]:
        for family in self._registry.collect():
            shown = copy.copy(family)
            shown.samples = [
                s for s in family.samples
                if "fn_name" not in s.labels or self._shows_fn(s.labels["fn_name"])
            ]  # fmt: skip
            yield shown
