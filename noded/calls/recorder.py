"""What is written of each call: its journal records, so that a restart loses no result
(:mod:`noded.calls.journal`), and, with ``--audit-log``, its audit records, so that people
can tell who ran what (:mod:`noded.calls.audit`).

A start is written before the call's process is sent its call, the audit record durably;
if either cannot be written, nothing runs and the caller gets ``507``.  Later records
never refuse anything: the journal keeps a backlog, the audit log logs and counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from noded.calls.audit import AuditLog
from noded.calls.journal import CallJournal, Leftover
from noded.calls.lost import LostCall
from noded.calls.outcomes import unwritable_result
from noded.calls.table import FunctionCall
from noded.metrics import Metrics
from noded.policy.rules import Caller
from rpc_client.errors import InsufficientStorage
from rpc_client.logs import event
from rpc_client.protocol import START_FUNCTION

log = logging.getLogger("noded.calls")

_COMPACT_BACKOFF_MAX_S = 60.0


class CallRecorder:
    """The journal and the audit log of one daemon."""

    def __init__(
        self, journal: CallJournal, audit: AuditLog | None, metrics: Metrics, state_dir: Path
    ) -> None:
        self.journal = journal
        self.audit = audit
        self._metrics = metrics
        self._state_dir = state_dir
        self._compact_backoff_s, self._next_compaction = 1.0, 0.0

    async def started(self, call: FunctionCall, caller: Caller | None, fn_args: Any) -> None:
        """Write a call's start (to disk, for the audit log); raises
        :class:`InsufficientStorage` if it cannot be written."""
        if self.audit is not None:
            fields = self.audit.fields(
                caller, START_FUNCTION, client=call.owner, fn_name=call.fn_name,
                fn_args=fn_args, request_id=call.request_id, fnc_id=call.fnc_id,
            )  # fmt: skip
            written_before = self.audit.seq
            try:
                await self.audit.append_durable("start", fields)
            except OSError as exc:
                if self.audit.seq > written_before:  # written, not known to be on disk
                    self._end_unstarted(call)
                raise InsufficientStorage(
                    f"the audit log {self.audit.path} cannot be written ({exc}); "
                    "no function was started"
                ) from exc
        try:
            self.journal.started(call)
        except OSError as exc:
            self._metrics.journal_failures.labels("start").inc()
            event(log, "journal.start_failed", logging.ERROR, fn_name=call.fn_name,
                  pid=call.pid, error=str(exc))  # fmt: skip
            self._end_unstarted(call)
            raise InsufficientStorage(
                f"the state directory {self._state_dir} cannot be written ({exc}); "
                "no function was started"
            ) from exc

    def _end_unstarted(self, call: FunctionCall) -> None:
        """Close the audit record of a start that was refused after it was written."""
        if self.audit is not None:
            self.audit.try_append("end", self._end_fields(call, "InsufficientStorage"))

    def finished(self, call: FunctionCall) -> None:
        """Write a call's result; if it cannot be written now it is later, and the call
        finishes all the same (its slot is free, its waiters answered)."""
        try:
            written = self.journal.finished(call)
        except orjson.JSONEncodeError as exc:  # decoded, but nested past what orjson writes
            call.result, call.error = None, unwritable_result(str(exc))
            written = self.journal.finished(call)
        if not written:
            self._metrics.journal_failures.labels("finish").inc()
        if self.audit is not None:
            outcome = call.error["type"] if call.error else "ok"
            self.audit.try_append("end", self._end_fields(call, outcome))

    def _end_fields(self, call: FunctionCall, outcome: str) -> dict[str, Any]:
        assert self.audit is not None
        return self.audit.fields(
            None, None, client=call.owner, fn_name=call.fn_name,
            request_id=call.request_id, fnc_id=call.fnc_id, outcome=outcome,
        )  # fmt: skip

    def lost_at_start(self, leftover: Leftover, why: str) -> None:
        """A call the daemon before this one started and never saw end: its audit
        ``end`` (outcome ``NodeRestarted``, ``reason`` why), so every start has one."""
        if self.audit is not None:
            fields = self.audit.fields(
                None, None, client=leftover.owner, fn_name=leftover.fn_name,
                request_id=leftover.request_id, fnc_id=leftover.fnc_id,
                outcome="NodeRestarted", reason=why,  # what a master is told
            )  # fmt: skip
            self.audit.try_append("end", fields)

    def aborted(self, call: FunctionCall, caller: Caller | None, procedure: str) -> None:
        """An AbortFunction asked by ``caller`` (the audit log's ``abort``)."""
        if self.audit is not None:
            fields = self.audit.fields(
                caller, procedure, fn_name=call.fn_name, request_id=call.request_id,
                fnc_id=call.fnc_id, outcome="finished" if call.finished else "running",
            )  # fmt: skip
            self.audit.try_append("abort", fields)

    def forgotten(self, call: FunctionCall) -> None:
        self.forgotten_lost(call.fnc_id)

    def forgotten_lost(self, fnc_id: str) -> None:
        if not self.journal.forget(fnc_id):
            self._metrics.journal_failures.labels("forget").inc()

    def rewrite(self, calls: Iterable[FunctionCall], lost: Iterable[LostCall]) -> None:
        """Rewrite the journal at start-up with what the daemon took over; if it cannot
        be, serve anyway: the old journal still holds it, only longer."""
        try:
            self.journal.compact(calls, lost)
        except OSError as exc:
            self._metrics.journal_failures.labels("compact").inc()
            event(log, "journal.compact_failed", logging.ERROR, error=str(exc))

    async def maintain(
        self, calls: Iterable[FunctionCall], lost: Iterable[LostCall], live: tuple[int, int]
    ) -> None:
        """Write what the journal could not, and rewrite it when it grows beyond the
        ``live`` calls and bytes of records, off the event loop (after a failed rewrite,
        again with a backoff: 1 s doubling to a minute)."""
        self.journal.retry()
        now = time.monotonic()
        if now < self._next_compaction or not self.journal.needs_compaction(*live):
            return
        try:
            await self.journal.compact_off_loop(calls, lost)
        except OSError as exc:
            self._metrics.journal_failures.labels("compact").inc()
            event(log, "journal.compact_failed", logging.ERROR, error=str(exc),
                  retry_in_s=self._compact_backoff_s)  # fmt: skip
            self._next_compaction = now + self._compact_backoff_s
            self._compact_backoff_s = min(self._compact_backoff_s * 2, _COMPACT_BACKOFF_MAX_S)
        else:
            self._compact_backoff_s = 1.0

    async def close(self) -> None:
        self.journal.close()
        if self.audit is not None:
            await self.audit.close()
