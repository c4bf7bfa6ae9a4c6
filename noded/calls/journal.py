"""The journal: calls on disk, so that a restart loses no computed result and leaks no
process.  It reads and writes records only; what to do about them (kill a leftover
group, keep a result) is the supervisor's.

One append-only journal, ``<state-dir>/calls.journal`` (mode 0600), kept open: a line per
event, each written with a single ``write``:

* ``{"op": "start", fnc_id, fn_name, pid, pid_birth, started}`` when a call starts;
* ``{"op": "finish", ...the whole call state...}`` before its result is announced;
* ``{"op": "forget", fnc_id}`` when a result expires or is dropped.

A line cut short by a crash is ignored when the journal is read.  When the journal holds
much more than the live calls, it is rewritten from them (a temporary file renamed into
place), and at every start.  Nothing is fsynced: this guards against the daemon's death,
not the machine's.  (One file kept open costs one ``write`` per event; a file per call
cost an ``open``, a ``rename`` and a ``close`` each, which measured as the largest part of
a call's cost.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from noded.calls.table import FunctionCall
from rpc_client.logs import event

log = logging.getLogger("noded.journal")

JOURNAL = "calls.journal"
#: rewrite the journal once it has this many more lines than there are live calls
_COMPACT_SLACK_LINES = 5000


@dataclass(frozen=True)
class Leftover:
    """A call the daemon before this one started and never saw finish."""

    fnc_id: str
    pid: int
    pid_birth: str | None


@dataclass
class Replayed:
    """What the journal holds of the daemons before this one."""

    #: calls started and never finished: their process groups may still run
    unfinished: list[Leftover] = field(default_factory=list)
    #: finished calls within the result TTL, oldest first
    finished: list[FunctionCall] = field(default_factory=list)


class CallJournal:
    """The journal of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._path = state_dir / JOURNAL
        self._fd = -1
        self._lines = 0

    def started(self, call: FunctionCall) -> None:
        self._append(_start_record(call))

    def finished(self, call: FunctionCall) -> None:
        self._append(_finish_record(call))

    def forget(self, fnc_id: str) -> None:
        self._append({"op": "forget", "fnc_id": fnc_id})

    def needs_compaction(self, live_calls: int) -> bool:
        return self._lines > live_calls + _COMPACT_SLACK_LINES

    def compact(self, calls: Iterable[FunctionCall]) -> None:
        """Rewrite the journal with only these calls' records."""
        records = [_finish_record(c) if c.finished else _start_record(c) for c in calls]
        tmp = self._path.with_name(f".{JOURNAL}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.writelines(orjson.dumps(record) + b"\n" for record in records)
        os.replace(tmp, self._path)
        self._reopen(len(records))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def replay(self, *, result_ttl_s: float) -> Replayed:
        """Read what the daemons before this one left, and rewrite the journal with the
        finished calls still within ``result_ttl_s`` (the unfinished ones are the
        caller's to deal with: they are not written again)."""
        running, finished = self._replay()
        found = Replayed()
        for record in running.values():
            found.unfinished.append(
                Leftover(record["fnc_id"], int(record["pid"]), record.get("pid_birth"))
            )
        now = time.time()
        for record in finished.values():
            if now - float(record.get("finished_at") or 0) < result_ttl_s:
                found.finished.append(_call_from(record))
        found.finished.sort(key=lambda call: call.finished_at or 0)
        self.compact(found.finished)
        return found

    # --- the file -------------------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> None:
        if self._fd < 0:
            self._reopen(0)
        view = memoryview(orjson.dumps(record) + b"\n")
        while view:  # a write to a regular file takes it all; the loop is for a short write
            view = view[os.write(self._fd, view) :]
        self._lines += 1

    def _reopen(self, lines: int) -> None:
        self.close()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self._path, flags, 0o600)
        self._lines = lines

    def _replay(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        running: dict[str, dict[str, Any]] = {}
        finished: dict[str, dict[str, Any]] = {}
        for record in self._records():
            fnc_id, op = record["fnc_id"], record.get("op")
            if op == "start":
                running[fnc_id] = record
            elif op == "finish":
                running.pop(fnc_id, None)
                finished[fnc_id] = record
            elif op == "forget":
                finished.pop(fnc_id, None)
        return running, finished

    def _records(self) -> Iterator[dict[str, Any]]:
        with contextlib.suppress(FileNotFoundError), open(self._path, "rb") as journal:
            for number, line in enumerate(journal, 1):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    # a line cut short by a crash, or damage: skip it, say so
                    event(log, "journal.bad_record", logging.WARNING, line=number)
                    continue
                if isinstance(record, dict) and isinstance(record.get("fnc_id"), str):
                    yield record


def _start_record(call: FunctionCall) -> dict[str, Any]:
    return {
        "op": "start",
        "fnc_id": call.fnc_id,
        "fn_name": call.fn_name,
        "pid": call.pid,
        "pid_birth": call.pid_birth,
        "started": call.started,
    }


def _finish_record(call: FunctionCall) -> dict[str, Any]:
    return {
        "op": "finish", "fnc_id": call.fnc_id, "fn_name": call.fn_name, "pid": call.pid,
        "started": call.started, "finished_at": call.finished_at,
        "request_id": call.request_id, "digest": call.digest.hex(),
        "result": call.result, "error": call.error, "progress": call.progress,
    }  # fmt: skip


def _call_from(record: dict[str, Any]) -> FunctionCall:
    call = FunctionCall(
        fnc_id=record["fnc_id"],
        fn_name=str(record.get("fn_name", "")),
        pid=int(record.get("pid", 0)),
        started=float(record.get("started", 0)),
        request_id=record.get("request_id"),
        digest=bytes.fromhex(record.get("digest") or ""),
    )
    call.finish(record.get("result"), record.get("error"))
    progress = record.get("progress")
    call.progress = progress if isinstance(progress, dict) else None
    call.finished_at = float(record["finished_at"])
    return call
