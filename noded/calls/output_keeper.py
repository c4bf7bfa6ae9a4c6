"""The output keeper: feeds each call's :class:`OutputLog` from its process, answers
reads of it, and deletes it with the call.  A disk that cannot be written costs a call
its output (counted, logged at most once per :data:`LOG_EVERY_S`), never the call.

All calls' output together is bounded too (``--max-retained-output-bytes``), in what
its files take on disk, whole blocks of the file system (a call that prints one line
takes a block, as many calls that print little fill a disk by blocks): past the bound,
the output of the calls that finished first is dropped (:meth:`OutputLog.drop`: its end
stays, so a read of it says in ``skipped`` that it is gone), until the rest fits.
The output of running calls is never dropped for it: each is bounded by
``--max-output-bytes`` alone.

Progress reports become output events at most one per :data:`PROGRESS_EVENT_INTERVAL_S`
per call (the rate ``progress()`` sends at): the call state's ``progress`` is always the
latest report, and a report that came sooner is written when the interval has passed,
before any later output, unless a newer one replaced it first.  A function that writes
reports to fd 3 without pause does not fill its output with them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from noded.calls.output_log import (
    OUTPUT_DIR,
    STDERR,
    STDOUT,
    LogOptions,
    OutputLog,
    OutputPage,
    block_bytes,
    remove_all_but,
)
from noded.calls.table import FunctionCall
from noded.metrics import Metrics
from rpc_client.logs import RateLimit, event

log = logging.getLogger("noded.output")

#: the events one WaitForFunction answer carries at most (the contract's "about 1 MiB")
MAX_OUTPUT_ANSWER_BYTES = 1 << 20
#: the shortest time between two progress events of one call
PROGRESS_EVENT_INTERVAL_S = 0.05
_STREAMS = {"stdout": STDOUT, "stderr": STDERR}
#: a failure to write output, or output dropped for room, is logged at most this often
LOG_EVERY_S = 10.0
#: the default bound on all calls' output: this, or a quarter of the state directory's
#: file system if less (the journal, the results and the node's uuid need room too)
DEFAULT_RETAINED_OUTPUT_BYTES = 256 << 20


#: the default bound on retained results (their journal records): this, or an eighth of
#: the state directory's file system if less.  The journal grows to twice its live
#: records plus 16 MiB before a rewrite, which writes them once more: three eighths and
#: 16 MiB at most, beside the quarter output takes (doc/operations.md)
DEFAULT_RETAINED_RESULT_BYTES = 256 << 20


def retained_output_bound(state_dir: Path, configured: int | None, per_call: int) -> int:
    """``--max-retained-output-bytes``, or its default for ``state_dir``'s file system;
    never less than one call's output (``per_call``)."""
    if configured is not None:
        return configured
    return max(per_call, _share_of_disk(state_dir, 4, DEFAULT_RETAINED_OUTPUT_BYTES))


def retained_results_bound(state_dir: Path, configured: int | None) -> int:
    """``--max-retained-bytes``, or its default for ``state_dir``'s file system: the
    journal, which holds the retained results, on a small disk leaves room for new calls."""
    if configured is not None:
        return configured
    return _share_of_disk(state_dir, 8, DEFAULT_RETAINED_RESULT_BYTES)


def _share_of_disk(state_dir: Path, parts: int, at_most: int) -> int:
    """One of ``parts`` parts of ``state_dir``'s file system, ``at_most`` at most."""
    try:
        disk = os.statvfs(state_dir)
        share = disk.f_blocks * disk.f_frsize // parts
    except OSError:
        share = at_most
    return min(at_most, share)


class OutputKeeper:
    """The output of every call of one daemon, under ``<state-dir>/output``."""

    def __init__(
        self, state_dir: Path, limit_bytes: int, metrics: Metrics, *, total_bytes: int | None
    ) -> None:
        self._directory = state_dir / OUTPUT_DIR
        self._limit_bytes = limit_bytes
        self._metrics = metrics
        #: fnc_id -> the progress events of a running call that reports
        self._gates: dict[str, _ProgressGate] = {}
        #: the bound on all calls' output on disk, and what it holds now
        self.total_bytes = retained_output_bound(state_dir, total_bytes, limit_bytes)
        #: what the output files take on disk now (OutputLog.disk_bytes: whole blocks)
        self._on_disk = 0
        self._block = block_bytes(state_dir)
        #: finished calls with output on disk, the first finished first
        self._finished: collections.OrderedDict[str, FunctionCall] = collections.OrderedDict()
        self._write_failures = RateLimit(LOG_EVERY_S)
        self._drops = RateLimit(LOG_EVERY_S)
        metrics.output_on_disk.set_function(lambda: self._on_disk)

    def output(self, call: FunctionCall, stream: str, data: bytes) -> None:
        """``call``'s process wrote ``data`` on ``stream`` ("stdout" or "stderr")."""
        gate = self._gates.get(call.fnc_id)
        if gate is not None:
            gate.write_waiting()  # it came first
        self._keep(call, lambda output: output.write(_STREAMS[stream], data), len(data))

    def progress(self, call: FunctionCall, report: dict[str, Any]) -> None:
        """``call``'s process reported progress: its state's at once, an output event at
        most once per PROGRESS_EVENT_INTERVAL_S."""
        call.progress = report
        gate = self._gates.get(call.fnc_id)
        if gate is None:
            gate = self._gates[call.fnc_id] = _ProgressGate(
                lambda waiting: self._keep(call, lambda output: output.progress(waiting), 0)
            )
        if gate.offer(report):
            call.output_changed()  # no event yet, but the state's progress is new

    def read(self, call: FunctionCall, position: int) -> dict[str, Any]:
        """The contract's ``output`` object of ``call`` from ``position`` on."""
        try:
            return call.read_output(position, MAX_OUTPUT_ANSWER_BYTES).to_wire()
        except OSError as exc:
            event(log, "output.read_failed", logging.WARNING, fnc_id=call.fnc_id, error=str(exc))
            return OutputPage(start=position, next=position, skipped=0).to_wire()

    def finish(self, call: FunctionCall) -> None:
        """The process is done: write what was held back, close the file; its output is
        now the first to go when all calls' output passes the bound."""
        gate = self._gates.pop(call.fnc_id, None)
        if gate is not None:
            gate.close()
        if call.output is not None:
            self._keep(call, lambda output: output.flush(), 0)
            self._finished[call.fnc_id] = call
            self._make_room()

    def forget(self, call: FunctionCall) -> None:
        self._finished.pop(call.fnc_id, None)
        if call.output is not None:
            self._on_disk -= call.output.disk_bytes
            call.output.remove()

    def _log_options(self) -> LogOptions:
        return {"on_kept": self._kept, "on_dropped": self._dropped, "block": self._block}

    def reopen(self, call: FunctionCall) -> None:
        """Take up the output a daemon before this one kept for ``call`` (finished)."""
        call.output = OutputLog.reopen(
            self._directory, call.fnc_id, self._limit_bytes, **self._log_options()
        )
        if call.output is not None:
            self._on_disk += call.output.disk_bytes
            self._finished[call.fnc_id] = call

    def keep_only(self, fnc_ids: Iterable[str]) -> None:
        """Delete the output of every call not named (forgotten, or lost in a crash); then
        what is kept fits the bound (it may have been lowered since)."""
        remove_all_but(self._directory, fnc_ids)
        self._make_room()

    def _keep(self, call: FunctionCall, write: Callable[[OutputLog], None], size: int) -> None:
        if call.output is None:  # the first output of this call: its log begins
            call.output = OutputLog(
                self._directory, call.fnc_id, self._limit_bytes, **self._log_options()
            )
        before = call.output.disk_bytes
        try:
            write(call.output)
        except OSError as exc:  # disk full, I/O error: the call goes on without it
            self._metrics.output_dropped.inc(size)
            if self._write_failures.allow():
                suppressed = self._write_failures.take_suppressed()
                event(log, "output.write_failed", logging.WARNING, fnc_id=call.fnc_id,
                      error=str(exc), suppressed=suppressed)  # fmt: skip
        self._on_disk += call.output.disk_bytes - before  # a block more, or a segment less
        call.output_changed()
        if call.finished and call.fnc_id not in self._finished:  # a descendant wrote on
            self._finished[call.fnc_id] = call
        if self._on_disk > self.total_bytes:
            self._make_room()

    def _kept(self, size: int) -> None:
        self._metrics.output_kept.inc(size)

    def _dropped(self, size: int) -> None:
        self._metrics.output_dropped.inc(size)

    def _make_room(self) -> None:
        """Drop the output of the calls that finished first until all output fits."""
        while self._on_disk > self.total_bytes and self._finished:
            _, call = self._finished.popitem(last=False)
            assert call.output is not None
            freed = call.output.drop()
            self._on_disk -= freed
            self._metrics.output_evicted.inc()
            if self._drops.allow():
                event(log, "output.dropped", fnc_id=call.fnc_id, freed_bytes=freed,
                      on_disk_bytes=self._on_disk, bound_bytes=self.total_bytes,
                      suppressed=self._drops.take_suppressed())  # fmt: skip


class _ProgressGate:
    """Lets a call's progress reports through as events at most one per interval; the
    latest report that came sooner waits for the interval's end (a timer), or for output
    that comes after it, and is replaced by any newer one meanwhile."""

    def __init__(self, write: Callable[[dict[str, Any]], None]) -> None:
        self._write = write
        self._last = -PROGRESS_EVENT_INTERVAL_S
        self._waiting: dict[str, Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, report: dict[str, Any]) -> bool:
        """Write ``report`` now, or keep it waiting: True if it waits."""
        now = time.monotonic()
        wait_s = self._last + PROGRESS_EVENT_INTERVAL_S - now
        self._waiting = report
        if wait_s <= 0 and self._timer is None:
            self.write_waiting()
            return False
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait_s, self.write_waiting)
        return True

    def write_waiting(self) -> None:
        """Write the report that waits, if any, now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        report, self._waiting = self._waiting, None
        if report is not None:
            self._last = time.monotonic()
            self._write(report)

    def close(self) -> None:
        """The call is done: its last report is written."""
        self.write_waiting()
