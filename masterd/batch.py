"""The batch file of a fan-out: what was asked of each node, so that a fan-out survives
the master (``call_many(..., batch_file=PATH)``, ``resume(PATH, nodes)``).

JSON Lines, appended and flushed to the kernel one line at a time, so that a master that
dies loses none of it:

* first, the fan-out: ``{"batch": 1, "fn_name", "fn_args", "timeout", "wait_s",
  "abort_after", "window", "canary", "max_failures", "nodes": [names, in order]}``;
* ``{"node", "request_id"}`` before a node's StartFunction is sent;
* ``{"node", "fnc_id"}`` once the node named its call;
* ``{"node", "ok": true, "value"}`` or ``{"node", "ok": false, "error": {...}, "fnc_id"}``
  once the call finished (a function's result or failure; a timeout, an unreachable node
  or a skipped one is not an end: a resume tries it again).

A resume starts nothing twice: a node with an fnc_id is waited for, one with only a
request_id is sent StartFunction again with that key (the node answers with the call it
started, if it did), and only the nodes never reached are started afresh.

A batch file has one user at a time: a run or resume holds an exclusive ``flock`` on the
sidecar ``FILE.lock`` from before the file is created or read until it is closed, and
writes there who it is (pid, host, start time); another run or resume on the same file
fails at once with :class:`BatchFileBusy`, naming the holder.  The sidecar is left in
place (removing it would let a third user lock a new file beside a held one).

A master killed mid-write leaves a torn last line: a resume cuts it off (the record was
never complete, so nothing it said was acted on) and warns.  A torn line anywhere else,
or a record that is not one of the above, is refused with the line's number.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from masterd.results import NodeResult
from rpc_client.errors import FunctionFailed, function_error
from rpc_client.logs import event

log = logging.getLogger("masterd.batch")

VERSION = 1
LOCK_SUFFIX = ".lock"


class BatchFileBusy(ValueError):
    """Raised when another run or resume holds the batch file (its lock says who)."""


@dataclass
class Progress:
    """What a batch file says was done: the fan-out, and each node's progress."""

    header: dict[str, Any]
    request_ids: dict[str, str] = field(default_factory=dict)
    fnc_ids: dict[str, str] = field(default_factory=dict)
    finished: dict[str, NodeResult] = field(default_factory=dict)
    #: where a torn last line begins (the file is cut there on resume), and its number
    torn_at: int | None = None
    torn_line: int | None = None
    #: the last line is a whole record without its newline
    unterminated: bool = False


class BatchLock:
    """The exclusive lock of a batch file: ``flock`` on ``FILE.lock``, which names its
    holder.  Released by :meth:`release` (or when the process ends, however it ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + LOCK_SUFFIX)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ValueError(f"cannot open the lock {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            os.close(self._fd)
            raise BatchFileBusy(
                f"the batch file {path} is in use by {holder} (its lock: {self.path}); "
                "wait for that run to end, or stop it, then resume"
            ) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, orjson.dumps(owner) + b"\n", 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)  # still held: no one reads a holder that has gone
            os.close(self._fd)
            self._fd = -1


def _holder(fd: int) -> str:
    """Who holds a lock, in words, from what it wrote in the lock file."""
    try:
        owner = orjson.loads(os.pread(fd, 4096, 0))
        return f"pid {owner['pid']} on {owner['host']} since {owner['started']}"
    except (OSError, ValueError, TypeError, KeyError):  # taken this instant, not written yet
        return "another run or resume (it has not written who it is yet)"


class BatchFile:
    """An open batch file, appended to, and its lock held."""

    def __init__(self, path: Path, fd: int, lock: BatchLock) -> None:
        self.path = path
        self._fd = fd
        self._lock = lock

    @classmethod
    def create(cls, path: Path, header: dict[str, Any]) -> BatchFile:
        """A new batch file; refuses to replace one (it may be a fan-out to resume)."""
        lock = BatchLock(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o600)  # fmt: skip
        except FileExistsError:
            lock.release()
            raise ValueError(
                f"the batch file {path} exists: resume it (rpc-cli gather --resume {path}) "
                "or remove it"
            ) from None
        batch = cls(path, fd, lock)
        batch._write({"batch": VERSION, **header})
        return batch

    @classmethod
    def reopen(cls, path: Path) -> tuple[BatchFile, Progress]:
        """An existing batch file, to go on with, and what it says was done; a torn last
        line is cut off first (see the module's docstring)."""
        lock = BatchLock(path)
        try:
            progress = read_progress(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except BaseException:
            lock.release()
            raise
        if progress.torn_at is not None:
            event(log, "batch.torn_line_dropped", logging.WARNING, path=str(path),
                  line=progress.torn_line, offset=progress.torn_at)  # fmt: skip
            os.ftruncate(fd, progress.torn_at)
        elif progress.unterminated:  # the next record must not be glued to the last
            os.write(fd, b"\n")
        return cls(path, fd, lock), progress

    def asked(self, node: str, request_id: str) -> None:
        self._write({"node": node, "request_id": request_id})

    def started(self, node: str, fnc_id: str) -> None:
        self._write({"node": node, "fnc_id": fnc_id})

    def finished(self, result: NodeResult) -> None:
        """A node's end, if it is one (see the module's docstring)."""
        if result.ok:
            self._write({"node": result.node, "ok": True, "value": result.value})
        elif isinstance(result.error, FunctionFailed):
            error = result.error
            self._write({"node": result.node, "ok": False, "error": error.error,
                         "fnc_id": error.fnc_id})  # fmt: skip

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._lock.release()

    def _write(self, record: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(record) + b"\n")


def read_progress(path: Path) -> Progress:
    """Read a batch file; ``ValueError`` saying what is wrong with it.  A torn last line
    is left out, and said in ``torn_at``/``torn_line``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the batch file {path}: {exc.strerror}") from exc
    lines = data.split(b"\n")
    complete, last = lines[:-1], lines[-1]  # last: after the final newline, b"" if whole
    records = [_record(path, number, line) for number, line in enumerate(complete, 1)]
    torn_at = torn_line = None
    unterminated = False
    if last:
        try:
            records.append(_loads(last))
            unterminated = True  # whole but for its newline
        except ValueError:
            torn_at, torn_line = len(data) - len(last), len(complete) + 1
    if not records or not isinstance(records[0], dict) or records[0].get("batch") != VERSION:
        raise ValueError(f"{path} is not a batch file of rpc-cli gather --batch-file")
    progress = Progress(header=records[0], torn_at=torn_at, torn_line=torn_line,
                        unterminated=unterminated)  # fmt: skip
    nodes = set(records[0].get("nodes") or ())
    for number, record in enumerate(records[1:], 2):
        _take(progress, record, nodes, f"{path}:{number}")
    return progress


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


def _record(path: Path, number: int, line: bytes) -> Any:
    try:
        return _loads(line)
    except ValueError:
        raise ValueError(
            f"{path}:{number}: not JSON, and not the last line (only the last line can be "
            "torn by a crash): the file was changed by hand, or written by two masters; "
            "repair or remove that line"
        ) from None


def _take(progress: Progress, record: Any, nodes: set[str], where: str) -> None:
    node = record.get("node") if isinstance(record, dict) else None
    if not isinstance(node, str):
        raise ValueError(f'{where}: not a record of a node (no "node"): {_preview(record)}')
    if node not in nodes:
        raise ValueError(f"{where}: node {node!r} is not one of the fan-out's nodes")
    if "request_id" in record:
        progress.request_ids[node] = record["request_id"]
    elif "fnc_id" in record and "ok" not in record:
        progress.fnc_ids[node] = record["fnc_id"]
    elif record.get("ok") is True:
        progress.finished[node] = NodeResult(node, True, record.get("value"))
    elif record.get("ok") is False and isinstance(record.get("error"), dict):
        error = function_error(record["error"], fnc_id=record.get("fnc_id"), node=node)
        progress.finished[node] = NodeResult(node, False, error=error)
    else:
        raise ValueError(f"{where}: not a record this version writes: {_preview(record)}")


def _preview(record: Any) -> str:
    text = orjson.dumps(record).decode()
    return text if len(text) <= 120 else text[:117] + "..."
