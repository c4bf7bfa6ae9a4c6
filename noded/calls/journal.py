"""The journal: calls on disk, so that a restart loses no computed result and leaks no
process.  It reads and writes records (:mod:`noded.calls.records`) only; what to do about
them (kill a leftover group, keep a result) is the supervisor's.

One append-only journal, ``<state-dir>/calls.journal`` (mode 0600), kept open: a line per
record, each written with a single ``write``.  A line cut short by a crash is ignored
when the journal is read.  When the journal holds much more than the live calls, it is
rewritten from them (a temporary file renamed into place), and at every start.  Nothing
is fsynced: this guards against the daemon's death, not the machine's.  (One file kept
open costs one ``write`` per record; a file per call cost an ``open``, a ``rename`` and a
``close`` each, which measured as the largest part of a call's cost.)

When the state directory cannot be written (disk full, I/O error, read-only):

* a start record raises ``OSError``: the caller refuses the call;
* a finish or forget record waits in a backlog (bounded) and is written, in order, as
  soon as a write succeeds again (or the journal is rewritten from the live calls);
* a record cut short is cut off again (``ftruncate`` back), or, if even that fails, the
  next record starts on a new line: it never swallows the next one;
* a failed rewrite removes its temporary file and raises; the old journal stays.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from noded.calls.appending import TornRecord, append_whole
from noded.calls.lost import LostCall
from noded.calls.records import (
    call_from,
    finish_record,
    forget_record,
    problem_of,
    start_record,
)
from noded.calls.table import FunctionCall
from rpc_client.logs import event

log = logging.getLogger("noded.journal")

JOURNAL = "calls.journal"
#: records kept in memory while the journal cannot be written, at most
BACKLOG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Leftover:
    """A call the daemon before this one started and never saw finish."""

    fnc_id: str
    pid: int
    pid_birth: str | None
    cgroup: str | None = None
    fn_name: str = ""
    #: its idempotency key, and whose (see noded.calls.table.request_key)
    request_id: str | None = None
    owner: str | None = None
    #: of its fn_name and fn_args (noded.calls.table.args_digest), with a request_id
    digest: bytes = b""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Leftover:
        """The leftover of a checked start record (:mod:`noded.calls.records`)."""
        return cls(
            record["fnc_id"], record["pid"], record["pid_birth"], record.get("cgroup"),
            fn_name=record["fn_name"], request_id=record.get("request_id"),
            owner=record.get("owner"), digest=bytes.fromhex(record.get("digest") or ""),
        )  # fmt: skip


@dataclass
class Replayed:
    """What the journal holds of the daemons before this one."""

    #: calls started and never finished: their process groups may still run
    unfinished: list[Leftover] = field(default_factory=list)
    #: finished calls within the result TTL, oldest first
    finished: list[FunctionCall] = field(default_factory=list)
    #: calls lost by a daemon before, still within the result TTL, oldest first
    lost: list[LostCall] = field(default_factory=list)


class CallJournal:
    """The journal of one state directory."""

    def __init__(self, state_dir: Path, *, slack_lines: int = 5000) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._path = state_dir / JOURNAL
        self._slack_lines = slack_lines
        self._fd = -1
        self._lines = 0
        self._size = 0
        #: a record was cut short and could not be cut off: start the next on a new line
        self._torn = False
        self._backlog: collections.deque[bytes] = collections.deque()
        self._backlog_bytes = 0

    def started(self, call: FunctionCall) -> None:
        """Write a call's start; raises ``OSError`` if it cannot be written."""
        self._flush_backlog()
        self._write(_line(start_record(call)))

    def finished(self, call: FunctionCall) -> bool:
        """Write a call's result; False if it waits in the backlog.  Raises
        ``orjson.JSONEncodeError`` for a result that cannot be written as JSON."""
        return self._write_or_defer(_line(finish_record(call)))

    def forget(self, fnc_id: str) -> bool:
        return self._write_or_defer(_line(forget_record(fnc_id)))

    @property
    def backlog(self) -> int:
        """Records waiting to be written."""
        return len(self._backlog)

    def retry(self) -> None:
        """Write what waits in the backlog, if the disk takes it now."""
        self._flush_backlog()

    def needs_compaction(self, live_calls: int) -> bool:
        return self._lines > live_calls + self._slack_lines

    def compact(self, calls: Iterable[FunctionCall], lost: Iterable[LostCall] = ()) -> None:
        """Rewrite the journal with only these calls' records (and so with what waited in
        the backlog); raises ``OSError``, leaving the old journal, if it cannot."""
        lines = [_line(finish_record(c) if c.finished else start_record(c)) for c in calls]
        lines += [_line(one.record()) for one in lost]
        tmp = self._path.with_name(f".{JOURNAL}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.writelines(lines)
            os.replace(tmp, self._path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._backlog.clear()
        self._backlog_bytes = 0
        self._reopen(len(lines))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def replay(self, *, result_ttl_s: float) -> Replayed:
        """Read what the daemons before this one left: the finished and lost calls still
        within ``result_ttl_s``, and the unfinished ones.  Nothing is rewritten: the
        caller deals with the unfinished calls, then rewrites the journal
        (:meth:`compact`) with what it keeps; until then a crash finds them again."""
        running, finished, lost = self._replay()
        found = Replayed()
        found.unfinished = [Leftover.from_record(record) for record in running.values()]
        now = time.time()
        for record in finished.values():
            if now - float(record["finished_at"]) < result_ttl_s:
                found.finished.append(call_from(record))
        found.finished.sort(key=lambda call: call.finished_at or 0)
        found.lost = [one for one in map(LostCall.from_record, lost.values())
                      if now - one.lost_at < result_ttl_s]  # fmt: skip
        found.lost.sort(key=lambda one: one.lost_at)
        return found

    # --- the file -------------------------------------------------------------------------

    def _write_or_defer(self, line: bytes) -> bool:
        if not self._flush_backlog():
            self._defer(line)
            return False
        try:
            self._write(line)
        except OSError as exc:
            event(log, "journal.write_failed", logging.ERROR, error=str(exc), waiting=1)
            self._defer(line)
            return False
        return True

    def _defer(self, line: bytes) -> None:
        self._backlog.append(line)
        self._backlog_bytes += len(line)
        dropped = 0
        while self._backlog_bytes > BACKLOG_BYTES and len(self._backlog) > 1:
            self._backlog_bytes -= len(self._backlog.popleft())
            dropped += 1
        if dropped:
            event(log, "journal.backlog_dropped", logging.ERROR, records=dropped,
                  limit_bytes=BACKLOG_BYTES)  # fmt: skip

    def _flush_backlog(self) -> bool:
        """Write the backlog out, in order; False if some of it is still waiting."""
        while self._backlog:
            try:
                self._write(self._backlog[0])
            except OSError:
                return False
            self._backlog_bytes -= len(self._backlog.popleft())
            if not self._backlog:
                event(log, "journal.backlog_written")
        return True

    def _write(self, line: bytes) -> None:
        """Append one line whole, or leave the file as it was (raising ``OSError``)."""
        if self._fd < 0:
            self._reopen(self._lines)
        if self._torn:
            line = b"\n" + line
        try:
            append_whole(self._fd, line, self._size)
        except TornRecord:
            self._torn = True
            raise
        self._size += len(line)
        self._lines += 1
        self._torn = False

    def _reopen(self, lines: int) -> None:
        self.close()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self._path, flags, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._lines = lines

    def _replay(self) -> tuple[_ByFncId, _ByFncId, _ByFncId]:
        """The records that hold at the end: of running, finished and lost calls."""
        running: _ByFncId = {}
        finished: _ByFncId = {}
        lost: _ByFncId = {}
        for record in self._records():
            fnc_id, op = record["fnc_id"], record["op"]
            running.pop(fnc_id, None)
            finished.pop(fnc_id, None)
            lost.pop(fnc_id, None)
            if op != "forget":
                {"start": running, "finish": finished, "lost": lost}[op][fnc_id] = record
        return running, finished, lost

    def _records(self) -> Iterator[dict[str, Any]]:
        """The records that can be taken; every other line is skipped and said so (a line
        cut short by a crash, damage, a field missing or of the wrong type)."""
        with contextlib.suppress(FileNotFoundError), open(self._path, "rb") as journal:
            for number, line in enumerate(journal, 1):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    problem: str | None = "not JSON"
                else:
                    problem = problem_of(record)
                if problem is None:
                    yield record
                elif line.strip():
                    event(log, "journal.bad_record", logging.WARNING, line=number, why=problem)


_ByFncId = dict[str, dict[str, Any]]


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"
