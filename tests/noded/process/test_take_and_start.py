"""Both spawners in two steps: ``take()`` a live, confined process waiting for its call,
then ``start(request, listener)`` it, once; or kill it unsent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from noded.process.child.frames import encode_request
from noded.process.fork_spawner import ForkSpawner
from noded.process.function import FunctionProcess, ProcessLimits
from noded.process.spawners import ExecSpawner, Spawner
from noded.process.tree import CallTrees, MarkedTree
from tests.helpers import eventually
from tests.noded.listeners import KeepingListener

LIMITS = ProcessLimits(kill_grace_s=1)


@pytest.fixture(params=["fork", "exec"])
async def spawner(request: pytest.FixtureRequest) -> AsyncIterator[Spawner]:
    made: Spawner
    if request.param == "fork":
        fork = ForkSpawner(["tests.functions"], LIMITS, spares=2, trees=CallTrees())
        await fork.start()
        made = fork
    else:
        made = ExecSpawner(["tests.functions"], LIMITS, trees=CallTrees())
    try:
        yield made
    finally:
        await made.close()


async def finished(proc: FunctionProcess) -> None:
    assert await proc.wait_reaped(20), f"pid {proc.pid} was not reaped"


async def test_a_taken_process_waits_confined_for_its_call(spawner: Spawner) -> None:
    proc = await spawner.take()
    assert proc.waiting_for_call and not proc.decided.done()
    assert isinstance(proc.tree, MarkedTree) and proc.tree.leader == proc.pid
    listener = KeepingListener()
    proc.start(encode_request("noisy", {"value": 7}), listener)
    await finished(proc)
    assert [outcome.exit_code for outcome in listener.outcomes] == [0]
    assert listener.frames == [b'{"ok":true,"result":7}']
    assert any(stream == "stdout" for stream, _ in listener.outputs), listener.outputs


async def test_a_process_runs_one_call(spawner: Spawner) -> None:
    proc = await spawner.take()
    proc.start(encode_request("add", {"a": 1, "b": 2}), KeepingListener())
    with pytest.raises(AssertionError, match="one call"):
        proc.start(encode_request("add", {"a": 1, "b": 2}), KeepingListener())
    await finished(proc)


async def test_a_process_killed_unsent_never_runs_its_call(spawner: Spawner) -> None:
    proc = await spawner.take()
    proc.kill_group()
    await finished(proc)
    # (its status, SIGKILL, comes from the fork server, which may lose it: not checked)
    assert proc.sigkilled and proc.outcome.frame is None and proc.outcome.exit_code is None
    after = await spawner.take()  # the next is another process, waiting
    assert after.pid != proc.pid and after.waiting_for_call
    after.kill_group()
    await finished(after)


async def test_a_process_gone_before_its_start_tells_its_listener_once(
    spawner: Spawner,
) -> None:
    proc = await spawner.take()
    proc.kill_group()
    await finished(proc)
    listener = KeepingListener()
    proc.start(encode_request("add", {"a": 1, "b": 2}), listener)
    assert listener.outcomes == [proc.outcome] and listener.frames == [None]
    assert listener.outputs == [] and listener.reports == []


async def test_progress_and_events_reach_the_listener(spawner: Spawner) -> None:
    proc = await spawner.take()
    listener = KeepingListener()
    proc.start(encode_request("report_progress", {"count": 3}), listener)
    await finished(proc)
    assert listener.reports and len(listener.outcomes) == 1


async def test_the_fork_servers_pool_is_refilled_after_a_process_killed_unsent() -> None:
    fork = ForkSpawner(["tests.functions"], LIMITS, spares=1)
    await fork.start()
    try:
        await eventually(lambda: len(fork._pool) == 1, timeout_s=20)
        proc = await fork.take()  # the pool ran empty: it is refilled at once
        await eventually(lambda: len(fork._pool) == 1, timeout_s=20)
        proc.kill_group()
        await finished(proc)
        spare = await fork.take()
        assert spare.waiting_for_call and spare.pid != proc.pid
        spare.kill_group()
        await finished(spare)
    finally:
        await fork.close()
