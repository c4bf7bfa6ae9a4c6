"""The output keeper: feeds each call's :class:`OutputLog` from its process, answers
reads of it, and deletes it with the call.  A disk that cannot be written costs a call
its output (counted, logged), never the call."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from noded.calls.output import (
    OUTPUT_DIR,
    STDERR,
    STDOUT,
    OutputLog,
    OutputPage,
    remove_all_but,
)
from noded.calls.table import FunctionCall
from noded.metrics import Metrics
from noded.process.function import FunctionProcess
from rpc_client.logs import event

log = logging.getLogger("noded.output")

#: the events one WaitForFunction answer carries at most (the contract's "about 1 MiB")
MAX_OUTPUT_ANSWER_BYTES = 1 << 20
_STREAMS = {"stdout": STDOUT, "stderr": STDERR}


class OutputKeeper:
    """The output of every call of one daemon, under ``<state-dir>/output``."""

    def __init__(self, state_dir: Path, limit_bytes: int, metrics: Metrics) -> None:
        self._directory = state_dir / OUTPUT_DIR
        self._limit_bytes = limit_bytes
        self._metrics = metrics

    def attach(self, call: FunctionCall, proc: FunctionProcess) -> None:
        """Keep what ``proc`` writes and reports as ``call``'s output from now on."""
        proc.on_output = lambda stream, data: self._keep(
            call, lambda output: output.write(_STREAMS[stream], data), len(data)
        )
        proc.on_progress = lambda report: self._progress(call, report)

    def read(self, call: FunctionCall, position: int) -> dict[str, Any]:
        """The contract's ``output`` object of ``call`` from ``position`` on."""
        try:
            return call.read_output(position, MAX_OUTPUT_ANSWER_BYTES).to_wire()
        except OSError as exc:
            event(log, "output.read_failed", logging.WARNING, fnc_id=call.fnc_id, error=str(exc))
            return OutputPage(start=position, next=position, skipped=0).to_wire()

    def finish(self, call: FunctionCall) -> None:
        """The process is done: write what was held back, close the file."""
        if call.output is not None:
            self._keep(call, lambda output: output.flush(), 0)

    def forget(self, call: FunctionCall) -> None:
        if call.output is not None:
            call.output.remove()

    def reopen(self, call: FunctionCall) -> None:
        """Take up the output a daemon before this one kept for ``call``."""
        call.output = OutputLog.reopen(self._directory, call.fnc_id, self._limit_bytes)

    def keep_only(self, fnc_ids: Iterable[str]) -> None:
        """Delete the output of every call not named (forgotten, or lost in a crash)."""
        remove_all_but(self._directory, fnc_ids)

    def _progress(self, call: FunctionCall, report: dict[str, Any]) -> None:
        call.progress = report
        self._keep(call, lambda output: output.progress(report), 0)

    def _keep(self, call: FunctionCall, write: Callable[[OutputLog], None], size: int) -> None:
        if call.output is None:  # the first output of this call: its log begins
            call.output = OutputLog(
                self._directory, call.fnc_id, self._limit_bytes,
                on_kept=self._metrics.output_kept.inc,
                on_dropped=self._metrics.output_dropped.inc,
            )  # fmt: skip
        try:
            write(call.output)
        except OSError as exc:  # disk full, I/O error: the call goes on without it
            self._metrics.output_dropped.inc(size)
            event(log, "output.write_failed", logging.WARNING, fnc_id=call.fnc_id, error=str(exc))
        call.output_changed()
