"""The exec spawner at the edge of the descriptor limit: a pipe2 that fails part-way
leaves no descriptor behind (it leaked the pipes already made)."""

from __future__ import annotations

import errno
import os
import resource
import sys

import pytest

from noded.process.function import ProcessLimits
from noded.process.spawners import child_environment, start_process
from noded.process.watcher import DescriptorWatcher


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def limit_leaving(free: int) -> int:
    """The RLIMIT_NOFILE under which exactly ``free`` descriptor numbers are unused."""
    used = {int(fd) for fd in open_fds()}
    number, left = 0, free
    while True:
        if number not in used:
            left -= 1
            if left == 0:
                return number + 1
        number += 1


async def test_a_pipe2_that_fails_part_way_leaves_no_descriptor_behind() -> None:
    watcher = DescriptorWatcher()
    argv = [sys.executable, "-c", "pass"]
    before = open_fds()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit_leaving(5), hard))  # two pipes, not 3
    try:
        with pytest.raises(OSError) as failed:
            start_process(argv, child_environment(), ProcessLimits(), watcher)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        watcher.close()
    assert failed.value.errno == errno.EMFILE
    assert open_fds() <= before  # nothing new (the watcher's own epoll is closed again)
