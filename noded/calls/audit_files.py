"""The audit log's files (:mod:`noded.calls.audit`): the lock that makes one daemon per
log, ``<state-dir>/audit.head``, and the last record of a log file.

``audit.head`` is two fixed lines, each rewritten in place by one ``pwrite``: at offset 0
the seq and hash of the last record written and the file (``dev:inode``) it went to,
rewritten right after each record; at :data:`DURABLE_AT` the seq and hash of the last
record known to be on disk, rewritten after each fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rpc_client.file_locks import flock_holder
from rpc_client.logs import event

log = logging.getLogger("noded.audit")

#: where the head's second line (the last record on disk) starts
DURABLE_AT = 128
_TAIL_CHUNK = 64 * 1024


class AuditLogError(OSError):
    """The audit log cannot be used (at start: say why and do not serve)."""


class AuditLogInUse(AuditLogError):
    """Raised when another running daemon holds the audit log's lock."""


@dataclass(frozen=True)
class Head:
    """What ``audit.head`` says: the last record written (and to which file), and the
    last one on disk."""

    seq: int
    prev: str
    durable_seq: int
    file_id: str | None = None


def lock(fd: int, path: Path) -> None:
    """One daemon per audit log: hold its lock, or raise :class:`AuditLogInUse`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = flock_holder(os.fstat(fd))
        raise AuditLogInUse(
            f"the audit log {path} is in use by another ganeti-noded"
            f"{f' (pid {holder})' if holder else ''}; give each daemon its own --audit-log"
        ) from None
    except OSError as exc:
        raise AuditLogError(f"cannot lock the audit log {path}: {exc.strerror}") from exc


def file_id(fd: int) -> str:
    """``dev:inode`` of an open file: which file a record went to, whatever its name."""
    info = os.fstat(fd)
    return f"{info.st_dev}:{info.st_ino}"


def open_head(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AuditLogError(f"cannot open {path}: {exc.strerror}") from exc


def write_head(fd: int, line: str, offset: int) -> None:
    """One line of ``audit.head``, in place (one write: never half of one)."""
    os.pwrite(fd, (line.ljust(DURABLE_AT - 1) + "\n").encode(), offset)


def read_head(path: Path) -> Head | None:
    """``audit.head``, or None if there is none (also the one-line head of before)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditLogError(f"cannot read {path}: {exc}") from exc
    if not text.strip():
        return None  # made, never written: the daemon stopped at once
    lines = text.split("\n")
    try:
        written = lines[0].split()
        durable = lines[1].split() if len(lines) > 1 else []
        seq = int(written[0])
        durable_seq = int(durable[0]) if durable else seq
        return Head(seq, written[1], durable_seq, written[2] if len(written) > 2 else None)
    except (IndexError, ValueError) as exc:
        raise AuditLogError(f"cannot read {path}: {exc}") from exc


def last_line(fd: int, path: Path) -> bytes | None:
    """The file's last whole record, cutting off a record a crash left unfinished."""
    start, tail = _tail(path, os.fstat(fd).st_size)
    if not tail.endswith(b"\n") and tail:
        whole = tail.rfind(b"\n") + 1
        event(log, "audit.cut_unfinished", logging.WARNING, path=str(path),
              bytes=len(tail) - whole)  # fmt: skip
        os.ftruncate(fd, start + whole)
        tail = tail[:whole]
    return _last_of(tail)


def rotated_last_line(path: Path, head: Head) -> bytes | None:
    """The last whole record of the file the head's last record went to, if it is still
    in the log's directory under another name (rotated while the daemon was down)."""
    if head.file_id is None:
        return None
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and _id_of(entry) == head.file_id:
                return _last_of(_tail(Path(entry.path), entry.stat().st_size)[1])
    return None


def _id_of(entry: os.DirEntry[str]) -> str:
    info = entry.stat(follow_symlinks=False)
    return f"{info.st_dev}:{info.st_ino}"


def _tail(path: Path, size: int) -> tuple[int, bytes]:
    """Where the last two lines (or fewer) of a file start, and those bytes."""
    with open(path, "rb") as stream:
        tail, start = b"", size
        while start > 0:
            start = max(0, start - _TAIL_CHUNK)
            stream.seek(start)
            tail = stream.read(size - start)
            if tail.count(b"\n") >= 2 or (start == 0 and b"\n" in tail):
                break
    return start, tail


def _last_of(tail: bytes) -> bytes | None:
    whole = tail[: tail.rfind(b"\n") + 1]  # an unfinished last line is no record
    lines = whole.rstrip(b"\n").rsplit(b"\n", 1)
    return lines[-1] if lines[-1] else None
