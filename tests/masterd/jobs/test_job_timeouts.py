"""A job's node has its timeout counted from when its start was recorded: not again
from the commit's end (a silent node named late), and not again from a resume (a
resumed call given its whole timeout a second time)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from masterd.batch import Progress
from masterd.call import CallOptions, Deadline
from masterd.fanout import FanOutRun
from masterd.results import NodeResult
from masterd.rollout import Rollout
from rpc_client.client import NodeClient
from rpc_client.transport import Pool
from tests.helpers import NodeFactory, eventually
from tests.masterd.daemon.running import Masterd, start_masterd
from tests.masterd.jobs.fleet import register, runs

#: the contract's bound: every node named within the job's timeout + 1 s
NAMED_WITHIN_S = 1.0


class _SlowStore:
    """A job's journal whose start records take ``commit_s`` to commit (a busy disk)."""

    def __init__(self, commit_s: float) -> None:
        self.commit_s = commit_s

    def request_id(self, node: str) -> str:
        return f"job.slow.{node}"

    async def asked(self, node: str, request_id: str) -> None:
        await asyncio.sleep(self.commit_s)

    def started(self, node: str, fnc_id: str) -> None:
        """Not needed here."""

    def finished(self, result: NodeResult) -> None:
        """Not needed here."""

    def close(self) -> None:
        """Nothing to close."""


@contextlib.asynccontextmanager
async def _silent_node() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        yield silent.getsockname()[1]


async def test_a_silent_node_is_named_within_the_timeout_counted_from_its_start() -> None:
    """The node's timeout runs from when its start is recorded, the commit included: a
    store slow to commit does not push a silent node's end past timeout + 1 s."""
    timeout_s, commit_s = 2.0, 2.0
    pool = Pool()
    try:
        async with _silent_node() as port:
            client = NodeClient("127.0.0.1", port, name="silent", pool=pool)
            run = FanOutRun(Deadline(None), "echo", {}, CallOptions(), None,
                            _SlowStore(commit_s), Progress(header={}),
                            node_timeout_s=timeout_s)  # fmt: skip
            began = time.monotonic()
            results = [r async for r in run.all([client], Rollout())]
            named_s = time.monotonic() - began
    finally:
        await pool.close()
    (result,) = results
    assert not result.ok and type(result.error).__name__ == "NodeTimeout", result
    assert named_s < timeout_s + NAMED_WITHIN_S, f"named {named_s:.2f} s after its start"


async def _follow_timed(masterd: Masterd, job_id: str, began: float) -> dict[str, Any]:
    """WaitForJob until the job ends: each node's result, with when it was seen."""
    position, named = 0, {}
    while True:
        state = await masterd.ok("WaitForJob", {"job_id": job_id, "timeout": 5,
                                                "results_from": position})  # fmt: skip
        for item in state["results"]["items"]:
            named[item["node"]] = {**item, "at_s": time.monotonic() - began}
        position = state["results"]["next"]
        if state["state"] in ("finished", "aborted") and not state["results"]["items"]:
            return named
        assert time.monotonic() - began < 60, f"job {job_id} did not end"


@pytest.mark.slow
async def test_a_resumed_call_has_what_was_left_of_its_timeout(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    """masterd killed while n1's call runs and started again 3 s after n1's start: n1
    has what is left of its 8 s, not 8 s again (named by 8 + 2 s, where 8 s from the
    resume would be 11 s or more); n2, never reached before, has its whole timeout (one
    at a time: window 1)."""
    timeout_s, count = 8.0, tmp_path / "runs.txt"
    first = await start_masterd([], tmp_path / "m")
    try:
        await register(first, await make_node("n1", delay_s=30), "n1", [])
        await register(first, await make_node("n2", delay_s=2), "n2", [])
        began = time.monotonic()
        state = await first.ok("SubmitJob", {
            "fn_name": "node_behaviour", "fn_args": {"count_path": str(count)},
            "nodes": ["n1", "n2"], "window": 1, "timeout": timeout_s})  # fmt: skip
        await eventually(lambda: runs(count)["n1"] == 1)
        await first.kill()
    finally:
        await first.stop()
    await asyncio.sleep(max(0.0, began + 3.0 - time.monotonic()))  # n1 runs on meanwhile
    second = await start_masterd([], tmp_path / "m")
    try:
        named = await _follow_timed(second, state["job_id"], began)
    finally:
        await second.stop()
    assert named["n1"]["outcome"] == "timed_out", named["n1"]
    assert named["n1"]["at_s"] < timeout_s + 2.0, named["n1"]
    assert named["n2"]["outcome"] == "ok", named["n2"]
    assert runs(count) == {"n1": 1, "n2": 1}
