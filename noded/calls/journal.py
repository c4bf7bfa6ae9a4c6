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

The rewrite runs off the event loop (:mod:`noded.calls.compaction`): the finish records
of retained calls are copied from the old journal, not encoded again, in a thread; what
is appended meanwhile goes to the old journal and, before the rename, to the new one.
It is due when the journal holds ``slack_lines`` more lines than live calls, or more
than twice the live records' bytes and :data:`SLACK_BYTES`.

When the state directory cannot be written (disk full, I/O error, read-only):

* a start record raises ``OSError``: the caller refuses the call;
* a finish or forget record waits in a backlog (bounded) and is written, in order, as
  soon as a write succeeds again (or the journal is rewritten from the live calls);
* a record cut short is cut off again (``ftruncate`` back), or, if even that fails, the
  next record starts on a new line: it never swallows the next one;
* a failed rewrite removes its temporary file and raises; the old journal stays.
"""

from __future__ import annotations

import asyncio
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
from noded.calls.compaction import Piece, Written, append_lines, write_pieces
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
#: a journal this much larger than twice its live records is rewritten
SLACK_BYTES = 16 * 1024 * 1024


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
        #: records waiting to be written: (line, the call it is the finish record of)
        self._backlog: collections.deque[_Entry] = collections.deque()
        self._backlog_bytes = 0
        #: where each finish record is whole in the journal: fnc_id -> (offset, length)
        self._finishes: dict[str, tuple[int, int]] = {}
        #: while a rewrite runs: what is appended meanwhile, and the backlog it replaces
        self._appended: list[_Entry] | None = None
        self._replaced_backlog = 0

    def started(self, call: FunctionCall) -> None:
        """Write a call's start; raises ``OSError`` if it cannot be written."""
        self._flush_backlog()
        self._write((_line(start_record(call)), None))

    def finished(self, call: FunctionCall) -> bool:
        """Write a call's result, and set its ``record_bytes``; False if it waits in the
        backlog.  Raises ``orjson.JSONEncodeError`` for a result that cannot be written
        as JSON."""
        line = _line(finish_record(call))
        call.record_bytes = len(line)
        return self._write_or_defer((line, call.fnc_id))

    def forget(self, fnc_id: str) -> bool:
        self._finishes.pop(fnc_id, None)
        return self._write_or_defer((_line(forget_record(fnc_id)), None))

    @property
    def backlog(self) -> int:
        """Records waiting to be written."""
        return len(self._backlog)

    def retry(self) -> None:
        """Write what waits in the backlog, if the disk takes it now."""
        self._flush_backlog()

    def needs_compaction(self, live_calls: int, live_bytes: int = 0) -> bool:
        """True when the journal holds much more than the live calls' records."""
        if self._appended is not None:
            return False  # a rewrite is running
        too_long = self._lines > live_calls + self._slack_lines
        return too_long or self._size > 2 * live_bytes + SLACK_BYTES

    def compact(self, calls: Iterable[FunctionCall], lost: Iterable[LostCall] = ()) -> None:
        """Rewrite the journal with only these calls' records (and so with what waited in
        the backlog), in the caller's thread; raises ``OSError``, leaving the old journal,
        if it cannot."""
        pieces, source = self._begin(calls, lost)
        try:
            self._end(write_pieces(source, self._tmp, pieces))
        finally:
            self._over()

    async def compact_off_loop(
        self, calls: Iterable[FunctionCall], lost: Iterable[LostCall] = ()
    ) -> None:
        """:meth:`compact`, with the file written in a thread while the loop goes on."""
        pieces, source = self._begin(calls, lost)
        try:
            written = await asyncio.to_thread(write_pieces, source, self._tmp, pieces)
            self._end(written)
        finally:
            self._over()

    @property
    def _tmp(self) -> Path:
        return self._path.with_name(f".{JOURNAL}.tmp")

    def _begin(self, calls: Iterable[FunctionCall], lost: Iterable[LostCall]) -> _Begun:
        """The pieces of the new journal, and the old one opened to copy them from (for
        :func:`write_pieces`, which closes it); from now on what is appended is also kept
        for the new one."""
        pieces = [self._piece(call) for call in calls]
        pieces += [Piece(line=_line(one.record())) for one in lost]
        try:
            source = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            source = -1  # nothing to copy from: no piece is a range
        self._appended, self._replaced_backlog = [], len(self._backlog)
        return pieces, source

    def _piece(self, call: FunctionCall) -> Piece:
        if not call.finished:
            return Piece(line=_line(start_record(call)))
        where = self._finishes.get(call.fnc_id) or (0, 0)  # none: waiting in the backlog
        return Piece(call.fnc_id, record=finish_record(call), at=where[0], length=where[1])

    def _end(self, written: Written) -> None:
        """Add what was appended during the rewrite, rename the new journal into place;
        the backlog it holds is dropped.  On ``OSError`` the new one is removed."""
        appended = self._appended or []
        try:
            append_lines(self._tmp, [line for line, _ in appended])
            os.replace(self._tmp, self._path)
        except OSError:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            raise
        for _ in range(self._replaced_backlog):
            self._backlog_bytes -= len(self._backlog.popleft()[0])
        self._finishes = written.finishes
        at = written.size
        for line, finish_of in appended:
            if finish_of is not None:
                self._finishes[finish_of] = (at, len(line))
            at += len(line)
        self._torn = False
        self._reopen(written.lines + len(appended))

    def _over(self) -> None:
        """The rewrite is over (done, failed or cancelled)."""
        self._appended, self._replaced_backlog = None, 0
        with contextlib.suppress(OSError):
            self._tmp.unlink()  # left by a rewrite that failed or was cancelled

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def replay(self, *, result_ttl_s: float) -> Replayed:
        """Read what the daemons before this one left: the finished and lost calls still
        within ``result_ttl_s``, and the unfinished ones.  Nothing is rewritten: the
        caller deals with the unfinished calls, then rewrites the journal
        (:meth:`compact`) with what it keeps; until then a crash finds them again."""
        running, finished, lost, sizes = self._replay()
        found = Replayed()
        found.unfinished = [Leftover.from_record(record) for record in running.values()]
        now = time.time()
        for fnc_id, record in finished.items():
            if now - float(record["finished_at"]) < result_ttl_s:
                call = call_from(record)
                call.record_bytes = sizes[fnc_id]
                found.finished.append(call)
        found.finished.sort(key=lambda call: call.finished_at or 0)
        found.lost = [one for one in map(LostCall.from_record, lost.values())
                      if now - one.lost_at < result_ttl_s]  # fmt: skip
        found.lost.sort(key=lambda one: one.lost_at)
        return found

    # --- the file -------------------------------------------------------------------------

    def _write_or_defer(self, entry: _Entry) -> bool:
        if not self._flush_backlog():
            self._defer(entry)
            return False
        try:
            self._write(entry)
        except OSError as exc:
            event(log, "journal.write_failed", logging.ERROR, error=str(exc), waiting=1)
            self._defer(entry)
            return False
        return True

    def _defer(self, entry: _Entry) -> None:
        self._backlog.append(entry)
        self._backlog_bytes += len(entry[0])
        dropped = 0
        while self._backlog_bytes > BACKLOG_BYTES and len(self._backlog) > 1:
            self._pop_backlog()
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
            self._pop_backlog()
            if not self._backlog:
                event(log, "journal.backlog_written")
        return True

    def _pop_backlog(self) -> None:
        self._backlog_bytes -= len(self._backlog.popleft()[0])
        if self._replaced_backlog:  # it was one a running rewrite would have replaced
            self._replaced_backlog -= 1

    def _write(self, entry: _Entry) -> None:
        """Append one line whole, or leave the file as it was (raising ``OSError``)."""
        if self._fd < 0:
            self._reopen(self._lines)
        line, finish_of = entry
        if self._torn:  # what a torn write left may follow the last whole record
            self._size = os.fstat(self._fd).st_size
        at = self._size + self._torn
        try:
            append_whole(self._fd, b"\n" + line if self._torn else line, self._size)
        except TornRecord:
            self._torn = True
            raise
        self._size = at + len(line)
        self._lines += 1
        self._torn = False
        if finish_of is not None:
            self._finishes[finish_of] = (at, len(line))
        if self._appended is not None:
            self._appended.append(entry)

    def _reopen(self, lines: int) -> None:
        self.close()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self._path, flags, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._lines = lines

    def _replay(self) -> tuple[_ByFncId, _ByFncId, _ByFncId, dict[str, int]]:
        """The records that hold at the end: of running, finished and lost calls, and
        the finish records' sizes (and where each is, for a rewrite to copy it)."""
        running: _ByFncId = {}
        finished: _ByFncId = {}
        lost: _ByFncId = {}
        sizes: dict[str, int] = {}
        self._finishes = {}
        for record, where, whole in self._records():
            fnc_id, op = record["fnc_id"], record["op"]
            running.pop(fnc_id, None)
            finished.pop(fnc_id, None)
            lost.pop(fnc_id, None)
            self._finishes.pop(fnc_id, None)
            if op != "forget":
                {"start": running, "finish": finished, "lost": lost}[op][fnc_id] = record
            if op == "finish":
                sizes[fnc_id] = where[1] + (not whole)
                if whole:  # a last line without its newline is written anew
                    self._finishes[fnc_id] = where
        return running, finished, lost, sizes

    def _records(self) -> Iterator[tuple[dict[str, Any], tuple[int, int], bool]]:
        """The records that can be taken, each with where it is (offset, length) and
        whether it ends its line; every other line is skipped and said so (a line cut
        short by a crash, damage, a field missing or of the wrong type)."""
        at = 0
        with contextlib.suppress(FileNotFoundError), open(self._path, "rb") as journal:
            for number, line in enumerate(journal, 1):
                at += len(line)
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    problem: str | None = "not JSON"
                else:
                    problem = problem_of(record)
                if problem is None:
                    yield record, (at - len(line), len(line)), line.endswith(b"\n")
                elif line.strip():
                    event(log, "journal.bad_record", logging.WARNING, line=number, why=problem)


_ByFncId = dict[str, dict[str, Any]]
#: a record to append: its line, and the call it is the finish record of (or None)
_Entry = tuple[bytes, str | None]
#: what a rewrite begins with: the pieces of the new journal, the old one open to read
_Begun = tuple[list[Piece], int]


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"
