"""What a function process writes: progress and its result frame on the frame channel,
and its output on stdout and stderr.

All are read from non-blocking pipes whenever the event loop reports them readable, and
all are bounded: a frame line by a size limit (a larger one is an error, not a result),
the stderr tail kept for errors by its last bytes, and the frame channel and the output
by how much one turn of the loop reads (the rest is read on the next turns, so that a
flood does not starve the other calls; where output goes is the caller's).  Progress
reports read in one turn are handed on as one, the latest: a function that writes
reports to fd 3 without pause costs one report a turn, not one a line.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any

from noded.process.child.frames import EVENT_PREFIX, decode_event, decode_progress

_READ_CHUNK = 1 << 16
#: chunks of output read from one pipe in one turn of the event loop
OUTPUT_CHUNKS_PER_TURN = 4
#: chunks of the frame channel read in one turn (a large result frame takes many turns,
#: each a copy; a flood of progress lines costs their decoding, bounded by this)
FRAME_CHUNKS_PER_TURN = 4

#: how much of a frame channel without a frame's end an error shows
PARTIAL_FRAME_BYTES = 4096


class FrameReader:
    """Reads the frame channel: progress lines, the latest of each read handed to
    ``on_progress``, then the result frame up to its newline; never holds more than
    ``limit_bytes`` of one line."""

    def __init__(
        self, limit_bytes: int, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self._limit_bytes = limit_bytes
        self.on_progress = on_progress
        self._buffer = bytearray()
        #: the frame, without its newline, once it is complete
        self.frame: bytes | None = None
        #: True if stdout went past the limit before the frame ended
        self.too_large = False
        #: progress reports read but not handed on: a later one in the same read replaced them
        self.coalesced = 0
        self._latest: dict[str, Any] | None = None
        #: called with each event line's ``{"type", "data", "at"}``
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    def read(self, fd: int, max_chunks: int = FRAME_CHUNKS_PER_TURN) -> bool:
        """Read what ``fd`` has, at most ``max_chunks`` chunks (the rest on the next call);
        True once it has nothing more to give: a frame, an overflow or EOF.  A line that
        would pass the limit ends the read.  The latest progress report read is handed on
        before it returns."""
        try:
            for _ in range(max_chunks):
                chunk = _read_chunk(fd)
                if chunk is None:
                    return False
                if not chunk or self._take(chunk):
                    return True
            return False
        finally:
            self._hand_on_progress()

    def _hand_on_progress(self) -> None:
        report, self._latest = self._latest, None
        if report is not None and self.on_progress is not None:
            self.on_progress(report)

    def _take(self, chunk: bytes) -> bool:
        """Take a chunk's lines; True once the frame is in or the limit passed."""
        while chunk:
            end = chunk.find(b"\n")
            part = chunk if end < 0 else chunk[:end]
            if len(self._buffer) + len(part) > self._limit_bytes:
                self.too_large = True
                self._buffer.clear()
                return True
            self._buffer += part
            if end < 0:
                return False
            chunk = chunk[end + 1 :]
            line = bytes(self._buffer)
            self._buffer.clear()
            if line.startswith(EVENT_PREFIX):
                self._hand_on_event(line)
                continue
            report = decode_progress(line)
            if report is None:
                self.frame = line
                return True
            if self._latest is not None:
                self.coalesced += 1
            self._latest = report
        return False

    def _hand_on_event(self, line: bytes) -> None:
        """An event line (``noded.emit``): handed on at once, never coalesced."""
        report = decode_event(line)
        if report is not None and self.on_event is not None:
            self.on_event(report)

    def partial(self) -> bytes:
        """The start of what was written without a frame's end."""
        return bytes(self._buffer[:PARTIAL_FRAME_BYTES])


class StderrTail:
    """Keeps the last ``limit_bytes`` a process wrote to stderr."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit_bytes = limit_bytes
        self._chunks: collections.deque[bytes] = collections.deque()
        self._length = 0

    def keep(self, chunk: bytes) -> None:
        """Add what the process wrote next; the oldest goes past the limit."""
        self._chunks.append(chunk)
        self._length += len(chunk)
        while self._length - len(self._chunks[0]) >= self._limit_bytes:
            self._length -= len(self._chunks.popleft())

    def tail(self) -> bytes:
        """The last bytes written (at most the limit)."""
        return b"".join(self._chunks)[-self._limit_bytes :]


def read_output(fd: int, on_chunk: Callable[[bytes], None], turns: int) -> bool:
    """Hand ``on_chunk`` what ``fd`` has, at most ``turns`` chunks; True at EOF."""
    count = 0
    while count < turns:
        chunk = _read_chunk(fd)
        if chunk is None:
            return False
        if not chunk:
            return True
        on_chunk(chunk)
        count += 1
    return False


def _read_chunk(fd: int) -> bytes | None:
    """The next chunk ``fd`` has: b"" at EOF, None if nothing is there yet."""
    try:
        return os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return None
