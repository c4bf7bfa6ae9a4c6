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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from masterd.results import NodeResult
from rpc_client.errors import FunctionFailed, function_error

VERSION = 1


@dataclass
class Progress:
    """What a batch file says was done: the fan-out, and each node's progress."""

    header: dict[str, Any]
    request_ids: dict[str, str] = field(default_factory=dict)
    fnc_ids: dict[str, str] = field(default_factory=dict)
    finished: dict[str, NodeResult] = field(default_factory=dict)


class BatchFile:
    """An open batch file, appended to."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, path: Path, header: dict[str, Any]) -> BatchFile:
        """A new batch file; refuses to replace one (it may be a fan-out to resume)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o600)  # fmt: skip
        except FileExistsError:
            raise ValueError(
                f"the batch file {path} exists: resume it (rpc-cli gather --resume {path}) "
                "or remove it"
            ) from None
        batch = cls(path, fd)
        batch._write({"batch": VERSION, **header})
        return batch

    @classmethod
    def reopen(cls, path: Path) -> tuple[BatchFile, Progress]:
        """An existing batch file, to go on with, and what it says was done."""
        progress = read_progress(path)
        return cls(path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)), progress

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

    def _write(self, record: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(record) + b"\n")


def read_progress(path: Path) -> Progress:
    """Read a batch file; ``ValueError`` saying what is wrong with it."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the batch file {path}: {exc.strerror}") from exc
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            if number < len(lines):  # only the last line may be cut short, by a crash
                raise ValueError(f"{path}:{number}: not JSON") from None
    if not records or not isinstance(records[0], dict) or records[0].get("batch") != VERSION:
        raise ValueError(f"{path} is not a batch file of rpc-cli gather --batch-file")
    progress = Progress(header=records[0])
    for record in records[1:]:
        _take(progress, record)
    return progress


def _take(progress: Progress, record: dict[str, Any]) -> None:
    node = record["node"]
    if "request_id" in record:
        progress.request_ids[node] = record["request_id"]
    elif "fnc_id" in record and "ok" not in record:
        progress.fnc_ids[node] = record["fnc_id"]
    elif record.get("ok") is True:
        progress.finished[node] = NodeResult(node, True, record.get("value"))
    else:
        error = function_error(record["error"], fnc_id=record.get("fnc_id"), node=node)
        progress.finished[node] = NodeResult(node, False, error=error)
