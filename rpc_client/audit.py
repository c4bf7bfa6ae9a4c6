"""The audit log's format: records in a hash chain, and the check of a chain.

A node writes one JSON object per line.  Each record carries ``seq`` (1, 2, ... without
gaps, across restarts and rotated files) and ``prev``: the hex SHA-256 of the previous
record's line without its newline (:data:`GENESIS` for the very first).  Editing,
removing, inserting or reordering a record breaks the chain at the next record, which
:func:`verify` names.  The format is shared: the node writes it, ``rpc-cli audit verify``
checks it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

GENESIS = "0" * 64

#: the events a node records (``tail_missing``: at start, records were gone from the end)
EVENTS = ("start", "deny", "abort", "end", "policy_reload", "tail_missing")


def line_hash(line: bytes) -> str:
    """The hex SHA-256 of one record's line, without its newline: the next one's ``prev``."""
    return hashlib.sha256(line).hexdigest()


def args_sha256(fn_args: dict[str, Any]) -> str:
    """The hex SHA-256 of the canonical JSON of ``fn_args``: keys sorted, no whitespace,
    UTF-8 (what a master computes to find its call in a node's audit log)."""
    return hashlib.sha256(orjson.dumps(fn_args, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Break:
    """Where a chain stops holding: the record, and what is wrong with it."""

    file: Path
    line: int
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"{where}{seq}: {self.problem}"


@dataclass(frozen=True)
class Verified:
    """A chain that holds: how many records, from which seq to which."""

    records: int
    first_seq: int | None
    last_seq: int | None

    @property
    def from_start(self) -> bool:
        """True if the chain begins at the very first record (seq 1)."""
        return self.first_seq in (None, 1)


def verify(files: Iterable[Path]) -> Verified | Break:
    """Check the chain across ``files`` in the order given.

    The first record given may continue a chain whose start is not among the files (its
    ``prev`` cannot be checked then, and :attr:`Verified.from_start` says so), unless it
    is seq 1, whose ``prev`` must be :data:`GENESIS`."""
    count, first_seq, prev_seq, prev_hash = 0, None, None, None
    for path, number, line in _lines(files):
        record = _record(line)
        if record is None:
            return Break(path, number, None, "not a JSON object with an integer seq and a prev")
        seq = record["seq"]
        problem = _link_problem(seq, record["prev"], prev_seq, prev_hash)
        if problem is not None:
            if record.get("event") == "tail_missing":
                problem += "; the node found them missing at its start and recorded it here"
            return Break(path, number, seq, problem)
        if first_seq is None:
            first_seq = seq
        count, prev_seq, prev_hash = count + 1, seq, line_hash(line)
    return Verified(count, first_seq, prev_seq)


def _link_problem(seq: int, prev: str, prev_seq: int | None, prev_hash: str | None) -> str | None:
    """What is wrong with a record that follows ``prev_seq`` (None: the first given)."""
    if prev_seq is None:
        if seq == 1 and prev != GENESIS:
            return (
                f"the first record's prev is not {GENESIS[:8]}...: records before it were removed"
            )
        return None
    if seq <= prev_seq:
        return f"seq {seq} after seq {prev_seq}: records were reordered, repeated or inserted"
    if seq != prev_seq + 1:
        return f"seq {seq} after seq {prev_seq}: {seq - prev_seq - 1} record(s) removed"
    if prev != prev_hash:
        return (
            f"its prev does not match the hash of record {prev_seq}: record {prev_seq} "
            "was edited, or this one was inserted or edited"
        )
    return None


def _lines(files: Iterable[Path]) -> Iterator[tuple[Path, int, bytes]]:
    for path in files:
        with open(path, "rb") as stream:
            for number, line in enumerate(stream, start=1):
                yield path, number, line.rstrip(b"\n")


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    seq, prev = record.get("seq"), record.get("prev")
    if type(seq) is not int or not isinstance(prev, str):
        return None
    return record
