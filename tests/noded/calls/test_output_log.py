"""A call's output log on real files: positions, the limit at its edge, restarts."""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import pytest

from noded.calls.output_log import (
    MIN_SEGMENT_BYTES,
    STDERR,
    STDOUT,
    OutputLog,
    char_boundary,
    complete_prefix,
    remove_all_but,
)

FNC_ID = "1:2:3.000000:0123456789abcdef"


def texts(log: OutputLog, position: int = 0, max_bytes: int = 1 << 20) -> list[str]:
    return [event["text"] for event in log.read(position, max_bytes).events]


def test_events_come_back_in_order_with_their_streams(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, FNC_ID, 1 << 20)
    log.write(STDOUT, b"one\n")
    log.write(STDERR, b"two\n")
    log.progress({"fraction": 0.5, "message": "half", "at": 1.0})
    page = log.read(0, 1 << 20)
    assert page.to_wire()["events"] == [
        {"stream": "stdout", "text": "one\n"},
        {"stream": "stderr", "text": "two\n"},
        {"stream": "progress", "fraction": 0.5, "text": "half"},
    ]
    assert (page.start, page.next, page.skipped) == (0, log.next, 0)
    assert log.read(page.next, 1 << 20).events == []  # nothing past the end


def test_a_follower_reads_each_event_once(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, FNC_ID, 1 << 20)
    position, seen = 0, []
    for n in range(50):
        log.write(STDOUT, f"line {n}\n".encode())
        page = log.read(position, 1 << 20)
        seen += [event["text"] for event in page.events]
        position = page.next
    assert seen == [f"line {n}\n" for n in range(50)]


def test_an_answer_is_bounded_and_the_next_one_goes_on(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, FNC_ID, 1 << 20)
    for _ in range(100):
        log.write(STDOUT, b"x" * 1000)
    first = log.read(0, 10_000)
    assert 10_000 <= first.next - first.start < 10_000 + 1010
    second = log.read(first.next, 1 << 20)
    assert len(first.events) + len(second.events) == 100


def test_the_newest_output_is_kept_within_the_limit_and_the_rest_counted(
    tmp_path: Path,
) -> None:
    limit = 2 * MIN_SEGMENT_BYTES
    dropped: list[int] = []
    log = OutputLog(tmp_path, FNC_ID, limit, on_dropped=dropped.append)
    for n in range(1000):
        log.write(STDOUT, f"{n:05d}\n".encode())
    on_disk = sum(path.stat().st_size for path in tmp_path.iterdir())
    assert on_disk <= limit
    page = log.read(0, 1 << 20)
    assert page.skipped == page.start > 0 and page.skipped == sum(dropped)
    assert texts(log)[-1] == "00999\n"  # the newest is kept
    assert page.next == log.next


def test_a_chunk_cut_inside_a_character_stays_whole(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, FNC_ID, 1 << 20)
    snowman = "☃".encode()
    log.write(STDOUT, b"a" + snowman[:1])
    log.write(STDOUT, snowman[1:] + b"b")
    assert "".join(texts(log)) == "a☃b"


def test_what_is_held_back_is_written_when_the_process_ends(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, FNC_ID, 1 << 20)
    log.write(STDERR, b"cut \xe2\x98")
    log.flush()
    assert "".join(texts(log)) == "cut \ufffd"


def test_a_position_inside_a_record_starts_at_the_next_record(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, FNC_ID, 1 << 20)
    log.write(STDOUT, b"first\n")
    middle = log.next - 2
    log.write(STDOUT, b"second\n")
    page = log.read(middle, 1 << 20)
    assert [event["text"] for event in page.events] == ["second\n"]
    assert page.skipped == 0 and page.start > middle


def test_a_new_daemon_reopens_the_log_and_forgotten_ones_go(tmp_path: Path) -> None:
    log = OutputLog(tmp_path, FNC_ID, 3 * MIN_SEGMENT_BYTES)
    for n in range(500):
        log.write(STDOUT, f"{n}\n".encode())
    log.flush()
    other = OutputLog(tmp_path, "9:9:9.000000:0123456789abcdef", 1 << 20)
    other.write(STDOUT, b"gone")
    other.flush()
    remove_all_but(tmp_path, [FNC_ID])
    again = OutputLog.reopen(tmp_path, FNC_ID, 3 * MIN_SEGMENT_BYTES)
    assert again is not None and again.next == log.next
    assert again.read(0, 1 << 20).to_wire() == log.read(0, 1 << 20).to_wire()
    assert OutputLog.reopen(tmp_path, "9:9:9.000000:0123456789abcdef", 1 << 20) is None
    again.remove()
    assert list(tmp_path.iterdir()) == []


def test_utf8_cuts() -> None:
    snowman = "☃".encode()  # three bytes
    assert complete_prefix(b"ab" + snowman) == 5
    assert complete_prefix(b"ab" + snowman[:2]) == 2
    assert complete_prefix(b"\xff\xfe") == 2  # not UTF-8: kept, replaced when read
    assert char_boundary(b"a" + snowman + b"b", 2) == 1
    assert char_boundary(b"abc", 2) == 2
    assert char_boundary(b"abc", 10) == 3


def test_a_record_cut_short_by_a_failed_write_is_cut_off_again(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes a write cross the limit short (a full disk does the same), and
    # the next one fail: what the short write left must not shift the records after it.
    log = OutputLog(tmp_path, FNC_ID, 1 << 20)
    log.write(STDOUT, b"a" * 100)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (150, hard))
        with pytest.raises(OSError):
            log.write(STDOUT, b"b" * 100)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    log.write(STDOUT, b"after")
    assert texts(log) == ["a" * 100, "after"]
    assert sum(path.stat().st_size for path in tmp_path.iterdir()) == log.next


def test_any_position_starts_at_the_first_record_at_or_after_it(tmp_path: Path) -> None:
    # positions no answer gave, in a log large enough to be read a block at a time
    log = OutputLog(tmp_path, FNC_ID, 8 << 20)
    starts = []
    for n in range(30_000):
        starts.append(log.next)
        log.write(STDOUT, b"y" * (n % 97 + 1) if n % 1000 else b"z" * 300_000)
    log.flush()
    reopened = OutputLog.reopen(tmp_path, FNC_ID, 8 << 20)
    assert reopened is not None
    oldest = log.read(0, 1).start
    for n, position in enumerate(range(oldest + 3, log.next, 104_729)):
        expected = next(s for s in starts if s >= position)
        for reader in (log, reopened) if n % 2 else (reopened, log):
            page = reader.read(position, 1000)
            assert page.start == expected and page.events
