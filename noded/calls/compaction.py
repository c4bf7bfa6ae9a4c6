"""Rewriting the journal from the live calls, without stalling the event loop.

The new journal is a list of pieces, decided in the event loop in one pass over the live
calls: a finish record that is whole in the old journal is *copied* from it (a range of
bytes: nothing decoded or encoded, nothing held in memory, the GIL released while it is
read and written); a start or lost record is encoded then (small); any other finish
record (one still waiting in the backlog) is encoded where it is written.  The pieces
are written to a temporary file by :func:`write_pieces`, in a thread; the journal then
adds what was appended meanwhile and renames the file into place, in the loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

#: bytes read and written at a time when a record is copied
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Piece:
    """One record of the new journal."""

    #: the call whose finish record this is (to know where it lands), or None
    finish_of: str | None = None
    #: the record, encoded
    line: bytes | None = None
    #: or the record, to encode in the thread if it cannot be copied
    record: dict[str, Any] | None = None
    #: where it is in the old journal, and its length with its newline (0: nowhere)
    at: int = 0
    length: int = 0


@dataclass
class Written:
    """What :func:`write_pieces` wrote."""

    size: int = 0
    lines: int = 0
    #: where each finish record landed: fnc_id -> (offset, length)
    finishes: dict[str, tuple[int, int]] = field(default_factory=dict)


def write_pieces(source_fd: int, path: Path, pieces: list[Piece]) -> Written:
    """Write ``pieces`` to a new file ``path`` (mode 0600), copying ranges from
    ``source_fd`` (-1: none), which it closes, in any case: it is this function's, so
    that a rewrite cancelled in the loop never leaves the thread reading a descriptor
    closed (and maybe reused) under it.  Raises ``OSError`` (the caller removes the file)."""
    written = Written()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            for piece in pieces:
                length = _write_piece(source_fd, fd, piece)
                if piece.finish_of is not None:
                    written.finishes[piece.finish_of] = (written.size, length)
                written.size += length
                written.lines += 1
        finally:
            os.close(fd)
    finally:
        if source_fd >= 0:
            os.close(source_fd)
    return written


def append_lines(path: Path, lines: list[bytes]) -> None:
    """Add ``lines`` to the end of ``path`` (what was appended during a rewrite)."""
    if not lines:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        for line in lines:
            _write_all(fd, line)
    finally:
        os.close(fd)


def _write_piece(source_fd: int, fd: int, piece: Piece) -> int:
    if piece.length and _looks_whole(source_fd, piece):
        _copy(source_fd, fd, piece.at, piece.length)
        return piece.length
    line = piece.line if piece.line is not None else orjson.dumps(piece.record) + b"\n"
    _write_all(fd, line)
    return len(line)


def _looks_whole(source_fd: int, piece: Piece) -> bool:
    """True if the range begins and ends as a record does (else it is encoded: a range
    that is not its record must never be copied into the new journal)."""
    first = os.pread(source_fd, 1, piece.at)
    last = os.pread(source_fd, 1, piece.at + piece.length - 1)
    return first == b"{" and last == b"\n"


def _copy(source_fd: int, fd: int, at: int, length: int) -> None:
    end = at + length
    while at < end:
        chunk = os.pread(source_fd, min(_CHUNK_BYTES, end - at), at)
        if not chunk:
            raise OSError(f"the journal ended at {at}, before a record it holds ({end})")
        _write_all(fd, chunk)
        at += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
