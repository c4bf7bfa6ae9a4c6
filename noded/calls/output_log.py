"""A call's output on disk: what its process wrote to stdout and stderr, and its progress
reports, in arrival order, the newest ``limit_bytes`` kept.

A call that prints nothing has no :class:`OutputLog` and no file.  One that prints has
one or two *segment* files (what they cost, :attr:`OutputLog.disk_bytes`, is counted in
whole blocks of the file system: one line printed costs a block, 4 KiB on most),
``<state-dir>/output/<fnc_id>.<base>``, where ``base`` is the position of the segment's
first byte.  A segment takes at most half the limit; when the current one is full a new
one starts and the one before the last is deleted, so the files never hold more than the
limit and memory holds none of it.

Positions (the contract's ``output_from``, ``next``, ``output_next``) are byte offsets in
the call's whole log, as if nothing had been dropped: they only grow.  A record is::

    <stream: 1 byte> <length: 4 bytes, little-endian> <payload>

with the payload UTF-8 text for stdout and stderr (a chunk is cut at a character
boundary, so that each record decodes on its own) and a JSON object for progress.

A read starts at its position and takes the segment a block at a time, only as far as
its answer goes: memory per read is a block plus the answer, whatever the limit.  A
position no answer gave is found by walking the records from the closest record start
remembered before it (one is remembered about every ``_INDEX_STEP`` bytes).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import orjson

from noded.calls.appending import TornRecord, append_whole

STDOUT, STDERR, PROGRESS = 0, 1, 2
STREAM_NAMES = ("stdout", "stderr", "progress")
_HEADER = struct.Struct("<BI")
#: the smallest segment: a progress report (its message cut to 1,000 characters) fits
MIN_SEGMENT_BYTES = 4096
#: the block size assumed where the file system does not say
DEFAULT_BLOCK_BYTES = 4096
#: positions remembered as record starts, so that a follower's next read seeks at once
_KNOWN_STARTS = 64
#: a record start is also remembered about every this many bytes of a segment, so that a
#: position no answer gave is found by walking at most this far
_INDEX_STEP = 256 * 1024
#: how much of a segment one read takes: memory per read is about this, plus the answer
_READ_BLOCK = 256 * 1024
OUTPUT_DIR = "output"


class LogOptions(TypedDict, total=False):
    """:class:`OutputLog`'s keywords, for :meth:`OutputLog.reopen` to pass on."""

    on_kept: Callable[[int], None] | None
    on_dropped: Callable[[int], None] | None
    block: int


@dataclass
class OutputPage:
    """One answer's worth of output: the contract's ``output`` object."""

    start: int
    next: int
    skipped: int
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"from": self.start, "next": self.next, "skipped": self.skipped,
                "events": self.events}  # fmt: skip


@dataclass
class _Segment:
    base: int
    path: Path
    size: int = 0


def block_bytes(directory: Path) -> int:
    """The block size of ``directory``'s file system (a file takes whole blocks of it)."""
    try:
        return max(512, os.statvfs(directory).f_frsize)
    except OSError:
        return DEFAULT_BLOCK_BYTES


class OutputLog:
    """The output of one call; ``on_kept``/``on_dropped`` count bytes (for metrics).
    ``block`` is the file system's block size, what :attr:`disk_bytes` counts in."""

    def __init__(
        self,
        directory: Path,
        fnc_id: str,
        limit_bytes: int,
        *,
        on_kept: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        block: int = DEFAULT_BLOCK_BYTES,
    ) -> None:
        self._directory = directory
        self._block = block
        self._fnc_id = fnc_id
        self._segment_bytes = max(MIN_SEGMENT_BYTES, limit_bytes // 2)
        self._segments: list[_Segment] = []
        self._fd = -1
        self._held = {STDOUT: b"", STDERR: b""}  # an incomplete UTF-8 character
        self._known_starts: list[int] = [0]
        #: record starts about every _INDEX_STEP bytes, in order (see _record_start)
        self._index: list[int] = [0]
        #: a failed write left part of a record that could not be cut off
        self._torn = False
        self._on_kept = on_kept
        self._on_dropped = on_dropped
        #: the position just past the last record
        self.next = 0

    # --- writing ----------------------------------------------------------------

    def write(self, stream: int, data: bytes) -> None:
        """Append what a process wrote to ``stream`` (STDOUT or STDERR)."""
        data = self._held[stream] + data
        cut = complete_prefix(data)
        self._held[stream] = data[cut:]
        self._append(stream, data[:cut])

    def progress(self, report: dict[str, Any]) -> None:
        """Append a progress report (an object with fraction, message, at)."""
        self._append(PROGRESS, orjson.dumps(report))

    def flush(self) -> None:
        """Write out what was held back (the process has ended: nothing will complete
        it) and close the file; it is opened again if more comes."""
        for stream, held in self._held.items():
            if held:
                self._held[stream] = b""
                self._append(stream, held)
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def disk_bytes(self) -> int:
        """What its files take on disk now: each file's bytes in whole blocks (an empty
        file takes none)."""
        return sum(-(-segment.size // self._block) * self._block for segment in self._segments)

    def drop(self) -> int:
        """Delete what it keeps, to make room for others' output, and count it dropped;
        its end stays (an empty segment there, which a restarted daemon reopens), so that
        a read says what it no longer holds in ``skipped``.  The disk it freed
        (:attr:`disk_bytes`)."""
        freed = self.disk_bytes
        if self._on_dropped is not None:
            self._on_dropped(sum(segment.size for segment in self._segments))
        self.remove()
        with contextlib.suppress(OSError):  # no room even for that: its end is in memory only
            self._new_segment()
            self.close()
        return freed

    def remove(self) -> None:
        """Delete the files (the call is forgotten)."""
        self.close()
        for segment in self._segments:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
        self._segments.clear()

    def _append(self, stream: int, payload: bytes) -> None:
        room = self._segment_bytes - _HEADER.size
        while payload:
            piece = payload[: char_boundary(payload, room)]
            payload = payload[len(piece) :]
            self._write_record(_HEADER.pack(stream, len(piece)) + piece)

    def _write_record(self, record: bytes) -> None:
        current = self._segments[-1] if self._segments else None
        if current is None or self._torn or current.size + len(record) > self._segment_bytes:
            current = self._new_segment()
        elif self._fd < 0:  # closed by flush(): more came
            self._fd = os.open(current.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            append_whole(self._fd, record, current.size)
        except TornRecord:  # the next record starts a segment of its own, so that
            self._torn = True  # positions stay true (a reader stops at the torn end)
            raise
        current.size += len(record)
        if not self._index or self.next - self._index[-1] >= _INDEX_STEP:
            self._index.append(self.next)
        self.next += len(record)
        if self._on_kept is not None:
            self._on_kept(len(record))

    def _new_segment(self) -> _Segment:
        self._torn = False
        self.close()
        self._directory.mkdir(mode=0o700, exist_ok=True)
        segment = _Segment(self.next, self._directory / f"{self._fnc_id}.{self.next}")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self._fd = os.open(segment.path, flags, 0o600)
        self._segments.append(segment)
        while len(self._segments) > 2:
            dropped = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                dropped.path.unlink()
            if self._on_dropped is not None:
                self._on_dropped(dropped.size)
        del self._index[: bisect.bisect_left(self._index, self._segments[0].base)]
        self._remember_start(segment.base)
        return segment

    # --- reading ----------------------------------------------------------------

    def read(self, position: int, max_bytes: int) -> OutputPage:
        """The events from ``position`` on, about ``max_bytes`` of them at most (at least
        one, if there is one); ``skipped`` counts what was dropped before them."""
        oldest = self._segments[0].base if self._segments else self.next
        start = min(max(position, oldest), self.next)
        page = OutputPage(start=start, next=start, skipped=max(0, oldest - position))
        for segment in self._segments:
            if segment.base + segment.size > page.next and not self._read_into(
                page, segment, max_bytes
            ):
                break
        self._remember_start(page.next)
        return page

    def _read_into(self, page: OutputPage, segment: _Segment, max_bytes: int) -> bool:
        """Add ``segment``'s events from ``page.next`` on; False once the page is full.
        Reads from that position on, a block at a time, never the whole segment."""
        fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            offset = self._record_start(fd, segment, page.next - segment.base)
            if not page.events:  # a position inside a record starts at the next one
                page.start = page.next = segment.base + offset
            for stream, payload, end in read_records(fd, offset, segment.size):
                page.events.append(event_of(stream, payload))
                page.next = segment.base + end
                if page.next - page.start >= max_bytes:
                    return False
            return True
        finally:
            os.close(fd)

    def _record_start(self, fd: int, segment: _Segment, offset: int) -> int:
        """``offset`` if a record starts there, else the first record start after it (a
        position no answer gave: found by walking the records from the closest start
        known before it, at most about ``_INDEX_STEP`` when it was written here)."""
        if offset <= 0 or segment.base + offset in self._known_starts:
            return max(offset, 0)
        known = [p for p in (*self._index, *self._known_starts) if p <= segment.base + offset]
        start = max([segment.base, *known]) - segment.base
        for _, _, end in read_records(fd, start, segment.size):
            self._index_start(segment.base + end)
            if end >= offset:
                return end
        return segment.size

    def _remember_start(self, position: int) -> None:
        if position not in self._known_starts:
            self._known_starts.append(position)
            del self._known_starts[:-_KNOWN_STARTS]

    def _index_start(self, position: int) -> None:
        """Remember ``position`` (a record start) if the closest start indexed before it
        is a step back or more."""
        at = bisect.bisect_left(self._index, position)
        if at < len(self._index) and self._index[at] == position:
            return
        if at == 0 or position - self._index[at - 1] >= _INDEX_STEP:
            self._index.insert(at, position)

    # --- after a restart ------------------------------------------------------------

    @classmethod
    def reopen(
        cls, directory: Path, fnc_id: str, limit_bytes: int, **options: Unpack[LogOptions]
    ) -> OutputLog | None:
        """The output log a daemon before this one kept for ``fnc_id``, if any (``options``
        as :class:`OutputLog` takes them)."""
        log = cls(directory, fnc_id, limit_bytes, **options)
        for path in sorted(directory.glob(f"{fnc_id}.*"), key=_base_of):
            log._segments.append(_Segment(_base_of(path), path, path.stat().st_size))
        if not log._segments:
            return None
        last = log._segments[-1]
        log.next = last.base + last.size
        log._known_starts = [segment.base for segment in log._segments] + [log.next]
        log._index = [segment.base for segment in log._segments]
        return log


def _base_of(path: Path) -> int:
    try:
        return int(path.name.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return -1


def remove_all_but(directory: Path, keep: Iterable[str]) -> None:
    """Delete the output files of every call not in ``keep`` (forgotten or lost)."""
    kept = set(keep)
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            if path.name.rsplit(".", 1)[0] not in kept:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def records(data: bytes, offset: int) -> Iterable[tuple[int, bytes, int]]:
    """``(stream, payload, end)`` of each whole record from ``offset`` on."""
    while offset + _HEADER.size <= len(data):
        stream, length = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        if end > len(data) or stream > PROGRESS:
            return  # cut short (a crash mid-write): the rest is not a record
        yield stream, data[offset + _HEADER.size : end], end
        offset = end


def read_records(fd: int, offset: int, size: int) -> Iterator[tuple[int, bytes, int]]:
    """``(stream, payload, end)`` of each whole record of file ``fd`` (``size`` bytes)
    from ``offset`` on, read a block at a time as they are asked for."""
    while offset + _HEADER.size <= size:
        block = os.pread(fd, min(_READ_BLOCK, size - offset), offset)
        taken = 0
        for stream, payload, end in records(block, 0):
            taken = end
            yield stream, payload, offset + end
        if not taken:  # a record longer than a block, or no record at all
            stream, length = _HEADER.unpack_from(block, 0)
            whole = os.pread(fd, _HEADER.size + length, offset)
            if stream > PROGRESS or len(whole) < _HEADER.size + length:
                return  # cut short (a crash mid-write): the rest is not a record
            taken = len(whole)
            yield stream, whole[_HEADER.size :], offset + taken
        offset += taken


def event_of(stream: int, payload: bytes) -> dict[str, Any]:
    """The contract's event object of one record."""
    if stream == PROGRESS:
        report = orjson.loads(payload)
        return {"stream": "progress", "fraction": report.get("fraction"),
                "text": report.get("message", "")}  # fmt: skip
    return {"stream": STREAM_NAMES[stream], "text": payload.decode("utf-8", "replace")}


def complete_prefix(data: bytes) -> int:
    """How much of ``data`` is whole UTF-8 characters: all of it, unless it ends inside a
    character (whose first bytes then wait for the rest)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the last character's first byte
            width = (
                1 if byte < 0x80 or byte >= 0xF8 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            )
            return len(data) - back if width > back else len(data)
    return len(data)  # not UTF-8 at all: decoded with replacement characters


def char_boundary(data: bytes, limit: int) -> int:
    """The largest cut ``<= limit`` that is not inside a UTF-8 character (``limit`` itself
    when there is none within 3 bytes: not UTF-8)."""
    if limit >= len(data):
        return len(data)
    for cut in range(limit, max(limit - 3, 1) - 1, -1):
        if data[cut] & 0xC0 != 0x80:
            return cut
    return limit
