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
batch file itself (its inode, so every name of it, a symlink or a hard link, shares the one
lock) from before anything is read or written until it is closed; another run or resume
fails at once with :class:`BatchFileBusy`, naming the holder (from ``/proc/locks``).  A new
batch file is written under a temporary name, locked, and only then linked to its name
(which never replaces anything), so no one sees it unlocked or without its header.  No
other file is opened: nothing beside the batch file can redirect a write.

A master killed mid-write leaves a torn last line: a resume cuts it off (the record was
never complete, so nothing it said was acted on) and warns.  A torn line anywhere else,
or a record that is not one of the above, is refused with the line's number.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import orjson
import psutil

from masterd.results import NodeResult
from rpc_client.errors import FunctionFailed, function_error
from rpc_client.file_locks import flock_holder as lock_holder
from rpc_client.logs import event

log = logging.getLogger("masterd.batch")

VERSION = 1
_TIME = "%Y-%m-%dT%H:%M:%SZ"


class BatchFileBusy(ValueError):
    """Raised when another run or resume holds the batch file (its lock says who)."""


@dataclass
class Progress:
    """What a batch file says was done: the fan-out, and each node's progress."""

    header: dict[str, Any]
    request_ids: dict[str, str] = field(default_factory=dict)
    #: a job's (ganeti-masterd): when each start was recorded (Unix time), which its
    #: node's timeout counts from
    asked: dict[str, float] = field(default_factory=dict)
    fnc_ids: dict[str, str] = field(default_factory=dict)
    finished: dict[str, NodeResult] = field(default_factory=dict)
    #: where a torn last line begins (the file is cut there on resume), and its number
    torn_at: int | None = None
    torn_line: int | None = None
    #: the last line is a whole record without its newline
    unterminated: bool = False


def _lock(fd: int, path: Path) -> None:
    """Hold the batch file open at ``fd``, or close it and raise :class:`BatchFileBusy`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(os.fstat(fd))
        os.close(fd)
        raise BatchFileBusy(
            f"the batch file {path} is in use by {holder}; wait for that run to end, or "
            "stop it, then resume"
        ) from None


def _holder(info: os.stat_result) -> str:
    """Who holds the lock of the file ``info`` describes, in words."""
    pid = lock_holder(info)
    if pid is None:
        return "another run or resume"
    try:
        started = time.gmtime(psutil.Process(pid).create_time())
    except psutil.Error:
        return f"pid {pid} on {socket.gethostname()}"
    return f"pid {pid} on {socket.gethostname()} since {time.strftime(_TIME, started)}"


def _open_existing(path: Path) -> int:
    """The batch file at ``path`` (through a symlink too: it is what the user named),
    opened to read and append; ``ValueError`` if it cannot be, or is not a regular file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ValueError(f"cannot open the batch file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"the batch file {path} is not a regular file")
    return fd


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _refuse_existing(path: Path) -> NoReturn:
    """Why a new batch file cannot be made at ``path``, which exists: in use, or there."""
    try:
        fd = _open_existing(path)
    except ValueError:  # not a file we can open: it is there all the same
        fd = -1
    if fd >= 0:
        _lock(fd, path)  # BatchFileBusy if a run or resume holds it
        os.close(fd)
    raise ValueError(
        f"the batch file {path} exists: resume it (rpc-cli gather --resume {path}) or remove it"
    )


class BatchFile:
    """An open batch file, appended to, and its lock held (as long as it is open)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, path: Path, header: dict[str, Any]) -> BatchFile:
        """A new batch file; refuses to replace one (it may be a fan-out to resume, or
        anything else a name there points to)."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(temporary, flags, 0o600)
        except OSError as exc:
            raise ValueError(f"cannot create the batch file {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new inode: no one else can hold it
            batch = cls(path, fd)
            batch._write({"batch": VERSION, **header})
            os.link(temporary, path)  # never replaces a name, a symlink's included
        except FileExistsError:
            os.close(fd)
            _refuse_existing(path)
        except OSError as exc:
            os.close(fd)
            raise ValueError(f"cannot create the batch file {path}: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return batch

    @classmethod
    def reopen(cls, path: Path) -> tuple[BatchFile, Progress]:
        """An existing batch file, to go on with, and what it says was done; a torn last
        line is cut off first (see the module's docstring)."""
        fd = _open_existing(path)
        _lock(fd, path)
        try:
            progress = parse_progress(path, _read_all(fd))
            if progress.torn_at is not None:
                event(log, "batch.torn_line_dropped", logging.WARNING, path=str(path),
                      line=progress.torn_line, offset=progress.torn_at)  # fmt: skip
                os.ftruncate(fd, progress.torn_at)
            elif progress.unterminated:  # the next record must not be glued to the last
                os.write(fd, b"\n")
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd), progress

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
        """Close the file, which lets go of its lock."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, record: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(record) + b"\n")


def read_progress(path: Path) -> Progress:
    """Read a batch file; ``ValueError`` saying what is wrong with it.  A torn last line
    is left out, and said in ``torn_at``/``torn_line``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the batch file {path}: {exc.strerror}") from exc
    return parse_progress(path, data)


def parse_progress(path: Path, data: bytes) -> Progress:
    """:func:`read_progress` of the contents ``data`` of the batch file ``path``."""
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
