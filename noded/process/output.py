"""What a function process writes: its result frame on stdout, the tail of its stderr.

Both are read from non-blocking pipes whenever the event loop reports them readable, and
both are bounded: the frame by a size limit (a larger one is an error, not a result), and
stderr by keeping only its last bytes.
"""

from __future__ import annotations

import collections
import os

_READ_CHUNK = 1 << 16

#: how much of a stdout without a frame's end an error shows
PARTIAL_STDOUT_BYTES = 4096


class FrameReader:
    """Reads stdout up to the frame's newline, never holding more than ``limit_bytes``."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit_bytes = limit_bytes
        self._buffer = bytearray()
        #: the frame, without its newline, once it is complete
        self.frame: bytes | None = None
        #: True if stdout went past the limit before the frame ended
        self.too_large = False

    def read(self, fd: int) -> bool:
        """Read what ``fd`` has; True once it has nothing more to give: a frame, an
        overflow or EOF.  A chunk that would pass the limit ends the read."""
        while (chunk := _read_chunk(fd)) is not None:
            if not chunk:
                return True
            end = chunk.find(b"\n")
            part = chunk if end < 0 else chunk[:end]
            if len(self._buffer) + len(part) > self._limit_bytes:
                self.too_large = True
                self._buffer.clear()
                return True
            self._buffer += part
            if end >= 0:
                self.frame = bytes(self._buffer)
                self._buffer.clear()
                return True
        return False

    def partial(self) -> bytes:
        """The start of what was written without a frame's end."""
        return bytes(self._buffer[:PARTIAL_STDOUT_BYTES])


class StderrTail:
    """Keeps the last ``limit_bytes`` a process wrote to stderr."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit_bytes = limit_bytes
        self._chunks: collections.deque[bytes] = collections.deque()
        self._length = 0

    def read(self, fd: int) -> bool:
        """Read what ``fd`` has; True at EOF."""
        while (chunk := _read_chunk(fd)) is not None:
            if not chunk:
                return True
            self._keep(chunk)
        return False

    def _keep(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._length += len(chunk)
        while self._length - len(self._chunks[0]) >= self._limit_bytes:
            self._length -= len(self._chunks.popleft())

    def tail(self) -> bytes:
        """The last bytes written (at most the limit)."""
        return b"".join(self._chunks)[-self._limit_bytes :]


def _read_chunk(fd: int) -> bytes | None:
    """The next chunk ``fd`` has: b"" at EOF, None if nothing is there yet."""
    try:
        return os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return None
