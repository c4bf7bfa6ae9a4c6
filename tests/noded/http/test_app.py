"""``create_app`` builds; starting the application takes over from the daemon before.

These run the application in this process (aiohttp's test server) with a spawner that
never makes a process: what is checked is the order of recovery, not the calls.  The
leftover is a real process group, as a crashed daemon leaves it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from noded.calls.journal import JOURNAL, CallJournal
from noded.calls.table import FunctionCall
from noded.config import NodedConfig
from noded.http.app import create_app
from noded.identity import load_identity
from noded.process.function import FunctionProcess
from noded.process.leftovers import process_birth
from noded.registry import load_modules
from tests.helpers import alive, still_alive


def leftover_id(pid: int) -> str:
    """The fnc_id of the call a crashed daemon ran in ``pid``."""
    return f"1:{pid}:1.000000:0123456789abcdef"


class NoSpawner:
    """A spawner for tests that start no call: it fails the test if asked for one."""

    async def take(self) -> FunctionProcess:
        raise AssertionError("no function process is expected here")

    def retire(self) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture
def leftover(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A running process group that the journal says a crashed daemon started."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    journal = CallJournal(tmp_path)
    call = FunctionCall(fnc_id=leftover_id(proc.pid), fn_name="sleep", pid=proc.pid, started=1.0)
    call.pid_birth = process_birth(proc.pid)
    journal.started(call)
    journal.close()
    yield proc
    proc.kill()
    proc.wait(10)


def app_of(state_dir: Path) -> object:
    config = NodedConfig(state_dir=state_dir)
    return create_app(
        config,
        registry=load_modules(()),
        identity=load_identity(state_dir, "test"),
        spawner=NoSpawner(),
    )


async def test_building_the_app_kills_nothing_and_keeps_the_journal(
    tmp_path: Path, leftover: subprocess.Popen[bytes]
) -> None:
    before = (tmp_path / JOURNAL).read_bytes()
    app_of(tmp_path)
    assert alive(leftover.pid)
    assert (tmp_path / JOURNAL).read_bytes() == before


async def test_starting_the_app_kills_the_leftover_and_says_so(
    tmp_path: Path, leftover: subprocess.Popen[bytes]
) -> None:
    app = app_of(tmp_path)
    async with TestClient(TestServer(app)) as client:  # type: ignore[arg-type]
        assert await still_alive([leftover.pid]) == []
        fnc_id = leftover_id(leftover.pid)
        answer = await client.put("/WaitForFunction", json={"fnc_id": fnc_id, "timeout": 0})
        body = await answer.json()
    assert answer.status == 404
    assert f"ganeti-noded {os.getpid()} killed what was left of it" in body["error"]["message"]
    assert leftover_id(leftover.pid) not in (tmp_path / JOURNAL).read_text()  # not carried forward
