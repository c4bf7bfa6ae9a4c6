"""LocalNode, the launcher of real daemons for tests, the demo and the bench."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from masterd.local import LocalNode
from tests.helpers import eventually, node_args, node_env


def _daemons() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children():
        try:
            if "noded" in child.cmdline():
                found.append(child)
        except psutil.Error:
            pass
    return found


async def test_a_start_cancelled_while_waiting_for_the_daemon_leaves_none_running(
    tmp_path: Path,
) -> None:
    # e.g. Ctrl-C in `make run`, or a test's timeout, while the daemon is still starting
    starting = asyncio.create_task(
        LocalNode.start(node_args(), env=node_env(), workdir=tmp_path, ready_timeout_s=60)
    )
    await eventually(lambda: bool(_daemons()))
    (daemon,) = _daemons()
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await eventually(lambda: not daemon.is_running() or daemon.status() == "zombie")
