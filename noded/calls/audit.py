"""The audit log: who ran what, in a hash chain (:mod:`rpc_client.audit`), on disk
before the call runs.

Records are appended to ``--audit-log FILE`` (mode 0600, ``O_APPEND``), one ``write``
each.  A ``start`` is awaited until it is on disk: the fsyncs of the starts that arrive
together are one fsync (group commit), made in a thread so the daemon keeps serving.
Other records are written at once and reach the disk with the next fsync.

Where the chain goes on at start: the last record of the file, or, if the file is empty
(rotated away), ``<state-dir>/audit.head``, which holds the seq and hash of the last
record made durable.  SIGHUP reopens the file (logrotate's ``create``); the first record
of the new file carries the hash of the last one of the old.
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
from noded.metrics import Metrics
from noded.policy import Caller
from rpc_client.audit import GENESIS, args_sha256, line_hash
from rpc_client.logs import event

log = logging.getLogger("noded.audit")

HEAD = "audit.head"
#: how long a start waits for its record to reach the disk before it is refused
SYNC_TIMEOUT_S = 10.0
_TAIL_CHUNK = 64 * 1024


class AuditLogError(OSError):
    """The audit log cannot be used (at start: say why and do not serve)."""


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
        self.seq, self.prev = self._chain_head()
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
        self._sync_soon()
        return self.seq

    def try_append(self, record_event: str, fields: dict[str, Any]) -> None:
        """Write a record that refuses nothing if it fails (logged and counted)."""
        with contextlib.suppress(OSError):
            self.append(record_event, fields)

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
            head = f"{target} {self.prev}\n".encode()
            try:
                await loop.run_in_executor(None, _sync, fds, self._head_path, head)
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
        self._retired.append(self._fd)
        self._fd = fd
        self._sync_soon()  # the old file is closed once it is on disk
        event(log, "audit.reopened", path=str(self.path), seq=self.seq)

    async def close(self) -> None:
        """Flush what was written (bounded), then close."""
        if self._syncing is not None:
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(SYNC_TIMEOUT_S):
                    await self._syncing
        for fd in [*self._retired, self._fd]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._retired = []

    # --- where the chain stands -----------------------------------------------------------

    def _chain_head(self) -> tuple[int, str]:
        line = _last_line(self._fd, self.path)
        if line is not None:
            try:
                seq = orjson.loads(line)["seq"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise AuditLogError(
                    f"the last record of the audit log {self.path} is not a record; "
                    "move the file aside (rpc-cli audit verify checks it) and start again"
                ) from None
            return int(seq), line_hash(line)
        try:
            seq_text, prev = self._head_path.read_text().split()
            return int(seq_text), prev
        except FileNotFoundError:
            return 0, GENESIS
        except (OSError, ValueError) as exc:
            raise AuditLogError(f"cannot read {self._head_path}: {exc}") from exc


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AuditLogError(f"cannot open the audit log {path}: {exc.strerror}") from exc


def _write_line(fd: int, line: bytes) -> None:
    """One record, cut off again if a write fails (the chain is then unchanged)."""
    append_whole(fd, line + b"\n", os.fstat(fd).st_size)


def _sync(fds: list[int], head_path: Path, head: bytes) -> None:
    """In a thread: each file to disk, then where the chain stands."""
    for fd in fds:
        os.fsync(fd)
    head_fd = os.open(head_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.pwrite(head_fd, head.ljust(96), 0)
    finally:
        os.close(head_fd)


def _last_line(fd: int, path: Path) -> bytes | None:
    """The file's last whole record, cutting off a record a crash left unfinished."""
    size = os.fstat(fd).st_size
    with open(path, "rb") as stream:
        tail, start = b"", size
        while start > 0:
            start = max(0, start - _TAIL_CHUNK)
            stream.seek(start)
            tail = stream.read(size - start)
            if tail.count(b"\n") >= 2 or (start == 0 and b"\n" in tail):
                break
    if not tail:
        return None
    if not tail.endswith(b"\n"):
        whole = tail.rfind(b"\n") + 1
        event(log, "audit.cut_unfinished", logging.WARNING, path=str(path),
              bytes=len(tail) - whole)  # fmt: skip
        os.ftruncate(fd, start + whole)
        tail = tail[:whole]
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    return lines[-1] if lines[-1] else None
