"""The audit log: who ran what, in a hash chain (:mod:`rpc_client.audit`), on disk
before the call runs.

Records are appended to ``--audit-log FILE`` (mode 0600, ``O_APPEND``), one ``write``
each.  A ``start`` is awaited until it is on disk: the fsyncs of the starts that arrive
together are one fsync (group commit), made in a thread so the daemon keeps serving.
Other records are written at once and reach the disk with the next fsync.

``<state-dir>/audit.head`` says where the chain stands (:mod:`noded.calls.audit_files`):
the seq and hash of the last record written (rewritten right after each record, so that
after a SIGKILL it is the file's last record), and of the last one known to be on disk
(after each fsync).  At start the chain goes on from the file's last record; if the file
is empty (rotated away while the daemon was down), from the head, or from the rotated
file if it is still in the directory and holds a later record (a SIGKILL between a
record and the head's rewrite).  If the file ends before the head's last
record (records cut from its end), the chain goes on from the head all the same, so no
seq is used twice, and the first record is a ``tail_missing`` saying which records are
gone (logged too, as ``audit.tail_missing``): ``rpc-cli audit verify`` then names the gap.

One daemon per audit log: the file is locked (``flock``) while it is in use; a second
daemon refuses to start, naming the holder's pid.  SIGHUP reopens the file (logrotate's
``create``), locking the new one; the first record of the new file carries the hash of
the last one of the old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from noded.calls.appending import append_whole
from noded.calls.audit_files import (
    DURABLE_AT,
    AuditLogError,
    AuditLogInUse,
    Head,
    file_id,
    last_line,
    lock,
    open_head,
    read_head,
    rotated_last_line,
    write_head,
)
from noded.metrics import Metrics
from noded.policy.rules import Caller
from rpc_client.audit import GENESIS, args_sha256, line_hash
from rpc_client.logs import event

log = logging.getLogger("noded.audit")

HEAD = "audit.head"
#: how long a start waits for its record to reach the disk before it is refused
SYNC_TIMEOUT_S = 10.0
__all__ = ["HEAD", "AuditLog", "AuditLogError", "AuditLogInUse"]


class AuditLog:
    """One audit log file and where its chain stands."""

    def __init__(
        self, path: Path, state_dir: Path, metrics: Metrics, *, record_args: bool = False
    ) -> None:
        self.path = path
        self.record_args = record_args
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._head_path = state_dir / HEAD
        self._metrics = metrics
        self._fd = _open(path)
        self._head_fd = -1
        try:
            lock(self._fd, path)
            self._file_id = file_id(self._fd)
            self._head_fd = open_head(self._head_path)
            self.seq, self.prev = self._chain_head()
            os.fsync(self._fd)  # what the file holds is on disk: the head may say so
            write_head(self._head_fd, f"{self.seq} {self.prev} {self._file_id}", 0)
            write_head(self._head_fd, f"{self.seq} {self.prev}", DURABLE_AT)
        except BaseException:
            for fd in (self._fd, self._head_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        self._synced_seq = self.seq
        #: descriptors of files rotated away, closed once synced
        self._retired: list[int] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._syncing: asyncio.Task[None] | None = None

    # --- writing ------------------------------------------------------------------

    def fields(
        self,
        caller: Caller | None,
        procedure: str | None,
        *,
        client: str | None = None,
        fn_name: str | None = None,
        fn_args: dict[str, Any] | None = None,
        request_id: str | None = None,
        fnc_id: str | None = None,
        outcome: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """A record's fields, every one present (null where it does not apply)."""
        fields: dict[str, Any] = {
            "client": caller.name if caller is not None else client,
            "peer": caller.peer if caller is not None else None,
            "procedure": procedure,
            "fn_name": fn_name,
            "args_sha256": args_sha256(fn_args) if fn_args is not None else None,
            "request_id": request_id,
            "fnc_id": fnc_id,
            "outcome": outcome,
        }
        if reason is not None:
            fields["reason"] = reason
        if self.record_args and fn_args is not None:
            fields["args"] = fn_args
        return fields

    def append(self, record_event: str, fields: dict[str, Any]) -> int:
        """Write a record (``seq``, ``at``, ``event``, ``fields``, ``prev``) and return
        its seq; raises ``OSError`` if it cannot be written (the chain is unchanged)."""
        self._write(record_event, fields)
        self._sync_soon()
        return self.seq

    def _write(self, record_event: str, fields: dict[str, Any]) -> None:
        seq = self.seq + 1
        record = {"seq": seq, "at": round(time.time(), 6), "event": record_event}
        record.update(fields)
        record["prev"] = self.prev
        line = orjson.dumps(record)
        try:
            _write_line(self._fd, line)
        except OSError as exc:
            self._metrics.audit_failures.labels(record_event).inc()
            event(log, "audit.write_failed", logging.ERROR, audit_event=record_event,
                  fnc_id=fields.get("fnc_id"), error=str(exc))  # fmt: skip
            raise
        self.seq, self.prev = seq, line_hash(line)
        try:  # at once: a SIGKILL from here on leaves the head at this record
            write_head(self._head_fd, f"{seq} {self.prev} {self._file_id}", 0)
        except OSError as exc:
            self._metrics.audit_failures.labels("head").inc()
            event(log, "audit.head_write_failed", logging.ERROR, seq=seq, error=str(exc))

    def try_append(self, record_event: str, fields: dict[str, Any]) -> None:
        """Write a record that refuses nothing if it fails (logged and counted)."""
        with contextlib.suppress(OSError):
            self.append(record_event, fields)

    def policy_reloaded(self, outcome: str, reason: str) -> None:
        """Record a reload's reading of the policy (SIGHUP): ``outcome`` ok or
        failed, ``reason`` the policy's file and hash, or why the one in force stays."""
        self.try_append("policy_reload", self.fields(None, None, outcome=outcome, reason=reason))

    async def append_durable(self, record_event: str, fields: dict[str, Any]) -> int:
        """Write a record and wait until it is on disk; ``OSError`` if it cannot be."""
        seq = self.append(record_event, fields)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, waiter))
        try:
            async with asyncio.timeout(SYNC_TIMEOUT_S):
                await waiter
        except TimeoutError:
            raise OSError(f"not flushed to disk within {SYNC_TIMEOUT_S:g} s") from None
        return seq

    # --- group commit -------------------------------------------------------------

    def _sync_soon(self) -> None:
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.get_running_loop().create_task(self._sync_while_behind())

    async def _sync_while_behind(self) -> None:
        """fsync until every record written is on disk: the records written while one
        fsync runs share the next."""
        loop = asyncio.get_running_loop()
        while self._synced_seq < self.seq or self._retired:
            target, fds = self.seq, [*self._retired, self._fd]
            head = f"{target} {self.prev}"
            try:
                await loop.run_in_executor(None, _sync, fds, self._head_fd, head)
            except OSError as exc:
                self._metrics.audit_failures.labels("fsync").inc()
                event(log, "audit.fsync_failed", logging.ERROR, seq=target, error=str(exc))
                self._settle(target, exc)
                return
            self._metrics.audit_fsyncs.inc()
            self._retire_synced(fds)
            self._synced_seq = target
            self._settle(target, None)

    def _settle(self, seq: int, error: OSError | None) -> None:
        still = []
        for waiting_seq, waiter in self._waiters:
            if waiting_seq > seq:
                still.append((waiting_seq, waiter))
            elif waiter.done():
                continue
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(None)
        self._waiters = still

    def _retire_synced(self, fds: list[int]) -> None:
        for fd in fds:
            if fd in self._retired:
                self._retired.remove(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)

    # --- rotation and stop --------------------------------------------------------------

    def reopen(self) -> None:
        """Open the file again at its path (after logrotate moved it away); the chain
        goes on in the new file.  If it cannot be opened, the old file stays in use."""
        try:
            fd = _open(self.path)
        except AuditLogError as exc:
            event(log, "audit.reopen_failed", logging.ERROR, error=str(exc))
            return
        if file_id(fd) == self._file_id:  # not rotated: the file held (and locked) already
            os.close(fd)  # a second flock on it would conflict with our own
            return
        try:
            lock(fd, self.path)
        except AuditLogError as exc:
            os.close(fd)
            event(log, "audit.reopen_failed", logging.ERROR, error=str(exc))
            return
        self._retired.append(self._fd)
        self._fd, self._file_id = fd, file_id(fd)
        self._sync_soon()  # the old file is closed once it is on disk
        event(log, "audit.reopened", path=str(self.path), seq=self.seq)

    async def close(self) -> None:
        """Flush what was written (bounded), then close."""
        if self._syncing is not None:
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(SYNC_TIMEOUT_S):
                    await self._syncing
        fds = [*self._retired, self._fd]
        if self._syncing is None or self._syncing.done():
            fds.append(self._head_fd)  # else a late fsync thread may still write it
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._retired = []

    # --- where the chain stands -----------------------------------------------------------

    def _chain_head(self) -> tuple[int, str]:
        head = read_head(self._head_path)
        line = last_line(self._fd, self.path)
        if line is None and head is not None:
            # rotated while the daemon was down: the head, unless the rotated file (if
            # still in the directory) shows a record the head did not catch up with
            line = rotated_last_line(self.path, head)
            if line is None or self._seq_of(line) < head.seq:
                return head.seq, head.prev
        if line is None:
            return 0, GENESIS
        seq = self._seq_of(line)
        if head is None or seq >= head.seq:
            return seq, line_hash(line)
        self.seq, self.prev = head.seq, head.prev  # never a seq twice
        self._tail_missing(seq, head)
        return self.seq, self.prev

    def _seq_of(self, line: bytes) -> int:
        try:
            return int(orjson.loads(line)["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise AuditLogError(
                f"the last record of the audit log {self.path} is not a record; "
                "move the file aside (rpc-cli audit verify checks it) and start again"
            ) from None

    def _tail_missing(self, last_seq: int, head: Head) -> None:
        """Say loudly, in the log and in the chain, that records are gone from the end."""
        how = (
            "removed: they were on disk"
            if last_seq < head.durable_seq
            else "removed, or lost in a crash of the machine before they reached the disk"
        )
        reason = (
            f"records {last_seq + 1} to {head.seq} are missing from the end of the audit "
            f"log (its last record is {last_seq}; {self._head_path} says {head.seq} was "
            f"written, {head.durable_seq} on disk): {how}"
        )
        event(log, "audit.tail_missing", logging.ERROR, path=str(self.path),
              last_seq=last_seq, head_seq=head.seq, reason=reason)  # fmt: skip
        self._write("tail_missing", self.fields(None, None, outcome="missing", reason=reason))


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AuditLogError(f"cannot open the audit log {path}: {exc.strerror}") from exc


def _write_line(fd: int, line: bytes) -> None:
    """One record, cut off again if a write fails (the chain is then unchanged)."""
    append_whole(fd, line + b"\n", os.fstat(fd).st_size)


def _sync(fds: list[int], head_fd: int, head: str) -> None:
    """In a thread: each file to disk, then the head's last record on disk."""
    for fd in fds:
        os.fsync(fd)
    write_head(head_fd, head, DURABLE_AT)
