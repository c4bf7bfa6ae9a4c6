"""The bounded readers of a function process's stdout and stderr, on real pipes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from noded.process.pipe_readers import PARTIAL_FRAME_BYTES, FrameReader, StderrTail, read_output


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):  # a test may have closed it
            os.close(fd)


def test_a_frame_written_in_pieces_is_taken_at_its_newline(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    reader = FrameReader(limit_bytes=100)
    os.write(write_end, b'{"ok": tr')
    assert reader.read(read_end) is False and reader.frame is None
    os.write(write_end, b"ue}\nnot part of it")
    assert reader.read(read_end) is True
    assert reader.frame == b'{"ok": true}'


def test_a_frame_of_exactly_the_limit_is_taken_and_one_byte_more_is_too_large(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    exact = FrameReader(limit_bytes=10)
    os.write(write_end, b"x" * 10 + b"\n")
    assert exact.read(read_end) and exact.frame == b"x" * 10 and not exact.too_large
    over = FrameReader(limit_bytes=10)
    os.write(write_end, b"x" * 11 + b"\n")
    assert over.read(read_end) and over.frame is None and over.too_large
    assert over.partial() == b""


def test_eof_without_a_newline_leaves_the_start_of_what_was_written(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    reader = FrameReader(limit_bytes=1 << 20)
    os.write(write_end, b"y" * (PARTIAL_FRAME_BYTES + 10))
    os.close(write_end)
    assert reader.read(read_end) is True
    assert reader.frame is None and not reader.too_large
    assert reader.partial() == b"y" * PARTIAL_FRAME_BYTES


def test_the_stderr_tail_keeps_the_last_bytes_up_to_its_limit(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    tail = StderrTail(limit_bytes=1000)
    for n in range(50):
        os.write(write_end, f"{n:04d}".encode() * 25)  # 100 bytes a write
        assert read_output(read_end, tail.keep, 1000) is False
    os.close(write_end)
    assert read_output(read_end, tail.keep, 1000) is True
    assert tail.tail() == b"".join(f"{n:04d}".encode() * 25 for n in range(40, 50))
