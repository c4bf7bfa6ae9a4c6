"""Appending a record to a file whole, or not at all: what the journal, the output log
and the audit log each need when the disk fills up under them."""

from __future__ import annotations

import os


class TornRecord(OSError):
    """A write failed and what it left of its record could not be cut off either: the
    next record must not follow it on the same line (or in the same segment)."""


def append_whole(fd: int, record: bytes, size: int) -> None:
    """Append ``record`` to ``fd`` (opened ``O_APPEND``, ``size`` bytes long before), in
    as many writes as it takes: a full disk may take part of it, then fail.  If a write
    fails, what it left is cut off (``ftruncate`` back to ``size``) and its error raised;
    :class:`TornRecord` if even that fails."""
    view = memoryview(record)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        try:
            os.ftruncate(fd, size)
        except OSError:
            raise TornRecord(exc.errno, exc.strerror) from exc
        raise
