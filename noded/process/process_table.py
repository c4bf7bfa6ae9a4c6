"""One pass over every process of the machine (``/proc``): who is whose child, which are
zombies, and which show a call's mark in their environment.  Made only where a call's
tree must be walked (no cgroup holds it).

Read straight from ``/proc`` (a small read of ``stat``, and of ``environ`` when marks are
asked for): about ten times faster than psutil, which matters when a shutdown walks the
trees of hundreds of calls.  A process's environment is read once: its mark is kept
with its start time for the next pass (a process gets the mark it shows from its parent
at fork or exec; only a function process writes its own, once, and is read again until
it has).  A walk that need not be fresh to the millisecond (a SIGTERM,
the first look before a SIGKILL) may take a table up to :data:`SHARED_S` old, made for
another call: one pass then serves every call a shutdown signals at once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from noded.process.child.frames import CALL_MARK

#: how old a table a walk that need not be fresh may take
SHARED_S = 0.05
_MARK = b"\0" + CALL_MARK.encode() + b"="
#: what is read of a process's environment, at most (the mark is near its start)
_ENVIRON_BYTES = 1 << 20


@dataclass
class ProcessTable:
    """The processes of the machine at one moment, as a call's tree needs them."""

    children: dict[int, list[int]] = field(default_factory=dict)
    zombies: set[int] = field(default_factory=set)
    #: pid -> the call mark it shows (when marks were read)
    marks: dict[int, str] = field(default_factory=dict)
    made: float = 0.0

    def descendants(self, roots: set[int]) -> set[int]:
        """Every descendant of ``roots`` (not themselves)."""
        found: set[int] = set()
        todo = list(roots)
        while todo:
            for child in self.children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    def marked(self, wanted: set[str]) -> dict[int, str]:
        """The processes showing one of the ``wanted`` marks: pid -> mark."""
        return {pid: mark for pid, mark in self.marks.items() if mark in wanted}


_shared: ProcessTable | None = None
#: pid -> (start time, the mark its environment showed) from the last pass with marks
_known: dict[int, tuple[bytes, str | None]] = {}
#: what a process shows before its call: the placeholder, or a spare's rehearsal mark
_NOT_YET = ("", "0:0")


def process_table(*, marks: bool = False, shared: bool = False) -> ProcessTable:
    """The table now (``marks``: read every process's call mark too); ``shared``: one
    made with marks up to :data:`SHARED_S` ago will do."""
    global _shared
    now = time.monotonic()
    if shared and _shared is not None and now - _shared.made <= SHARED_S:
        return _shared
    table = ProcessTable(made=now)
    known: dict[int, tuple[bytes, str | None]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            _add(table, int(name), known if marks else None)
    if marks:
        _shared = table
        _known.clear()
        _known.update(known)
    return table


def _add(table: ProcessTable, pid: int, known: dict[int, tuple[bytes, str | None]] | None) -> None:
    stat = _read(f"/proc/{pid}/stat", 4096)
    fields = stat[stat.rfind(b")") + 2 :].split(maxsplit=20)
    if len(fields) < 20:
        return  # gone
    table.children.setdefault(int(fields[1]), []).append(pid)
    if fields[0] == b"Z":
        table.zombies.add(pid)
    elif known is not None:
        start, before = fields[19], _known.get(pid)
        if before is not None and before[0] == start and before[1] not in _NOT_YET:
            mark = before[1]
        else:
            mark = _mark_in(pid)
        known[pid] = (start, mark)
        if mark and mark not in _NOT_YET:
            table.marks[pid] = mark


def _mark_in(pid: int) -> str | None:
    environ = b"\0" + _read(f"/proc/{pid}/environ", _ENVIRON_BYTES)
    start = environ.find(_MARK)
    if start < 0:
        return None
    start += len(_MARK)
    end = environ.find(b"\0", start)
    return environ[start : end if end >= 0 else None].decode("ascii", "replace")


def _read(path: str, most: int) -> bytes:
    """Up to ``most`` bytes of a /proc file; b"" if the process is gone or not ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks, size = [], 0
        while size < most:
            asked = min(16384, most - size)
            chunks.append(chunk := os.read(fd, asked))
            size += len(chunk)
            if len(chunk) < asked:  # /proc gives what it has: the end
                break
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)
