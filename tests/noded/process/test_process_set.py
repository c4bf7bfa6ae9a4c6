"""The set of live function processes, as shutdown sees it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from noded.process.process_set import ProcessSet


class _Process(SimpleNamespace):
    """What ProcessSet uses of a FunctionProcess: its reaped future and its signals."""

    def __init__(self) -> None:
        super().__init__(reaped=asyncio.get_running_loop().create_future(), signals=[])

    def terminate_group(self, kill_after_s: float | None = None) -> None:
        self.signals.append("TERM")

    def kill_group(self) -> None:
        self.signals.append("KILL")


async def test_a_process_reaped_in_this_turn_is_not_unreaped_nor_signalled() -> None:
    # Shutdown logged "shutdown.unreaped" (ERROR) for a process reaped in the same turn
    # of the loop: it was still in ``live``, whose done callback had not run yet.
    processes = ProcessSet()
    reaped, running = _Process(), _Process()
    processes.add("a", _typed(reaped))
    processes.add("b", _typed(running))
    reaped.reaped.set_result(None)
    assert "a" in processes.live  # its callback runs in the next turn
    assert processes.unreaped() == [running]
    terminating = asyncio.create_task(processes.terminate_all(grace_s=10.0))
    await asyncio.sleep(0)
    assert running.signals == ["TERM"]
    running.reaped.set_result(None)  # it leaves during the grace
    await asyncio.wait_for(terminating, 10.0)
    assert reaped.signals == [] and running.signals == ["TERM", "KILL"]
    assert processes.unreaped() == [] and processes.live == {}


def _typed(proc: _Process) -> Any:
    return proc
