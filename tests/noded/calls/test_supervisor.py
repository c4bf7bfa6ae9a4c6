"""The supervisor over a fake spawner (tests.noded.fake_spawner): take, record (or kill
and re-raise), start.  Its processes are real; the faults are the test's."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from noded.calls.journal import JOURNAL, CallJournal
from noded.calls.recorder import CallRecorder
from noded.calls.supervisor import Supervisor
from noded.calls.table import FunctionCall
from noded.config import NodedConfig
from noded.metrics import Metrics
from noded.policy.rules import Caller
from noded.process.tree import CallTrees
from noded.registry import load_modules
from rpc_client.errors import InsufficientStorage, NodeBusy
from rpc_client.protocol import StartFunctionRequest
from tests.helpers import eventually
from tests.noded.fake_spawner import FakeSpawner


class Recorder(CallRecorder):
    """The real recorder, with a say in each start: ``before(call)`` runs before it is
    written, and may raise."""

    def __init__(self, state_dir: Path, metrics: Metrics) -> None:
        super().__init__(CallJournal(state_dir), None, metrics, state_dir)
        self.before: Any = None

    async def started(self, call: FunctionCall, caller: Caller | None, fn_args: Any) -> None:
        if self.before is not None:
            await self.before(call)
        await super().started(call, caller, fn_args)


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.config = NodedConfig(state_dir=tmp_path, max_functions=2)
        self.spawner = FakeSpawner()
        metrics = Metrics()
        self.recorder = Recorder(tmp_path, metrics)
        self.supervisor = Supervisor(
            self.config, load_modules(["tests.functions"]), self.spawner, os.getpid(),
            self.recorder, metrics, CallTrees(),
        )  # fmt: skip

    async def start(self, fn_name: str, timeout: float = 20, **fn_args: Any) -> Any:
        request = StartFunctionRequest(fn_name=fn_name, timeout=timeout, fn_args=fn_args)
        return await self.supervisor.start(request)

    def journal(self) -> bytes:
        return (self.config.state_dir / JOURNAL).read_bytes()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(tmp_path)
    try:
        yield made
    finally:
        await made.spawner.stop_all()
        await made.supervisor.shutdown()


async def test_a_call_is_taken_recorded_then_started(harness: Harness) -> None:
    seen: list[tuple[bool, bool]] = []

    async def before(call: FunctionCall) -> None:
        proc = harness.spawner.taken[-1]
        seen.append((proc.pid == call.pid, proc.waiting_for_call))

    harness.recorder.before = before
    state = await harness.start("add", a=1, b=2)
    assert (state.finished, state.result, state.error) == (True, 3, None)
    assert seen == [(True, True)]  # recorded while its process waited, unsent
    assert state.fnc_id.encode() in harness.journal()


async def test_a_start_that_cannot_be_written_runs_nothing(
    harness: Harness, tmp_path: Path
) -> None:
    async def refuse(call: FunctionCall) -> None:
        raise InsufficientStorage("the state directory cannot be written (test)")

    harness.recorder.before = refuse
    ran = tmp_path / "ran"
    with pytest.raises(InsufficientStorage):
        await harness.start("count_run", path=str(ran))
    [proc] = harness.spawner.taken
    assert proc.reaped.done()  # killed and reaped before the error was raised
    assert proc.outcome.signal == signal.SIGKILL
    assert not ran.exists()
    assert not harness.supervisor.calls.all_calls()
    harness.recorder.before = None
    state = await harness.start("add", a=2, b=2)  # its place is free again
    assert state.result == 4


async def test_a_process_that_dies_while_its_start_is_written_ends_its_call(
    harness: Harness,
) -> None:
    """It never saw its call: its exit decides it (FunctionProcessDied), at once."""

    async def die(call: FunctionCall) -> None:
        proc = harness.spawner.taken[-1]
        proc.kill_group()
        await proc.wait_reaped(10)

    harness.recorder.before = die
    state = await harness.start("add", a=1, b=2)
    assert state.finished and state.error is not None, state
    assert state.error["type"] == "FunctionProcessDied", state.error
    assert not harness.supervisor.calls.running


async def test_a_process_gone_before_it_is_taken_ends_its_call(harness: Harness) -> None:
    harness.spawner.dead_on_arrival = True
    state = await harness.start("add", a=1, b=2)
    assert state.error is not None and state.error["type"] == "FunctionProcessDied", state


async def test_a_shortage_of_processes_is_busy_and_passes(harness: Harness) -> None:
    harness.spawner.failures.append(OSError(errno.EAGAIN, "no process left (test)"))
    with pytest.raises(NodeBusy):
        await harness.start("add", a=1, b=2)
    assert (await harness.start("add", a=1, b=1)).result == 2


async def test_a_start_cancelled_while_written_kills_its_process(harness: Harness) -> None:
    written = asyncio.Event()

    async def stall(call: FunctionCall) -> None:
        written.set()
        await asyncio.sleep(60)

    harness.recorder.before = stall
    starting = asyncio.create_task(harness.start("add", a=1, b=2))
    await asyncio.wait_for(written.wait(), 20)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    [proc] = harness.spawner.taken
    assert await proc.wait_reaped(10)
    assert proc.outcome.signal == signal.SIGKILL
    assert not harness.supervisor.calls.all_calls()


async def test_processes_being_made_count_against_max_functions(harness: Harness) -> None:
    harness.spawner.hold = asyncio.Event()
    first = asyncio.create_task(harness.start("add", a=1, b=2))
    second = asyncio.create_task(harness.start("add", a=1, b=2))
    await asyncio.sleep(0)  # both wait for their process
    with pytest.raises(NodeBusy, match="0 functions are running and 2 starting"):
        await harness.start("add", a=1, b=2)
    harness.spawner.hold.set()
    assert [state.result for state in await asyncio.gather(first, second)] == [3, 3]


async def test_a_retired_spawner_closes_once_its_call_is_reaped(
    harness: Harness,
) -> None:
    old = harness.spawner
    running = asyncio.create_task(harness.start("sleep_then", seconds=1.0, value=1))
    await eventually(lambda: bool(harness.supervisor.calls.running), timeout_s=20)
    new = FakeSpawner()
    harness.supervisor.replace_functions(harness.supervisor.registry, new)
    assert old.retired and not old.closed  # its call runs on
    assert (await running).result == 1
    await eventually(lambda: old.closed, timeout_s=20)
    state = await harness.start("add", a=1, b=2)
    assert state.result == 3 and len(new.taken) == 1
    await new.stop_all()
