"""A small disk of a test's own (a tmpfs, as root), to fill and free."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class SmallDisk:
    """A tmpfs of its own, to fill and free."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self, leave_bytes: int = 0) -> None:
        """Fill the disk, then give back ``leave_bytes`` (rounded up to pages)."""
        chunk = b"\0" * 65536
        with open(self.filler, "ab", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        if leave_bytes:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave_bytes))
        with pytest.raises(OSError) as full:  # really full (up to what was given back)
            (self.path / "probe").write_bytes(b"x" * (leave_bytes + 8192))
        assert full.value.errno == errno.ENOSPC
        with contextlib.suppress(FileNotFoundError):
            (self.path / "probe").unlink()

    def free(self) -> None:
        self.filler.unlink()


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
