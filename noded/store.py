"""Calls on disk, so that a restart loses no computed result and leaks no process.

``<state-dir>/calls/running/<fnc_id>.json``: a running call, with its process's pid and
start time, written when it starts.  ``<state-dir>/calls/finished/<fnc_id>.json``: a
finished call's whole state, written before its result is announced, then the running
record goes.  Every write is atomic (a temporary file renamed into place); nothing is
fsynced, because what this guards against is the daemon's death, not the machine's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from noded.calls import FunctionCall
from noded.logs import event
from noded.process import kill_leftover_group

log = logging.getLogger("noded.store")


@dataclass
class Recovered:
    """What a new daemon found of the one before it."""

    finished: list[FunctionCall] = field(default_factory=list)
    #: fnc_id -> why it is gone
    lost: dict[str, str] = field(default_factory=dict)
    killed_groups: int = 0


class CallStore:
    """The running and finished records under one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self._running = state_dir / "calls" / "running"
        self._finished = state_dir / "calls" / "finished"
        for directory in (self._running, self._finished):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def started(self, call: FunctionCall, pid_start_time: float | None) -> None:
        record = {
            "fnc_id": call.fnc_id,
            "fn_name": call.fn_name,
            "pid": call.pid,
            "pid_start_time": pid_start_time,
            "started": call.started,
        }
        _write_atomically(self._path(self._running, call.fnc_id), orjson.dumps(record))

    def finished(self, call: FunctionCall) -> None:
        record = {
            "fnc_id": call.fnc_id, "fn_name": call.fn_name, "pid": call.pid,
            "started": call.started, "finished_at": call.finished_at,
            "request_id": call.request_id, "digest": call.digest.hex(),
            "result": call.result, "error": call.error,
        }  # fmt: skip
        _write_atomically(self._path(self._finished, call.fnc_id), orjson.dumps(record))
        _remove(self._path(self._running, call.fnc_id))

    def forget(self, fnc_id: str) -> None:
        _remove(self._path(self._finished, fnc_id))

    def recover(self, *, result_ttl_s: float, daemon_pid: int) -> Recovered:
        """Kill what the last daemon left running; load the results still retained."""
        found = Recovered()
        for path, record in self._records(self._running):
            if kill_leftover_group(record["pid"], record.get("pid_start_time")):
                found.killed_groups += 1
            found.lost[record["fnc_id"]] = (
                "it was still running when the ganeti-noded that started it stopped; "
                f"ganeti-noded {daemon_pid} killed what was left of it at start-up"
            )
            _remove(path)
        now = time.time()
        for path, record in self._records(self._finished):
            if now - float(record.get("finished_at") or 0) >= result_ttl_s:
                _remove(path)
            else:
                found.finished.append(_call_from(record))
        found.finished.sort(key=lambda call: call.finished_at or 0)
        return found

    def _records(self, directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
        for path in sorted(directory.glob("*.json")):
            try:
                record = orjson.loads(path.read_bytes())
                if isinstance(record, dict) and isinstance(record.get("fnc_id"), str):
                    yield path, record
                    continue
            except (OSError, orjson.JSONDecodeError):
                pass
            event(log, "store.bad_record", logging.WARNING, path=str(path))
            _remove(path)

    @staticmethod
    def _path(directory: Path, fnc_id: str) -> Path:
        return directory / f"{fnc_id}.json"


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
    call.finished_at = float(record["finished_at"])
    return call


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    # results may be sensitive: 0600 whatever the umask
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
