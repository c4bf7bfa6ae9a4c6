"""A job survives its master: SIGKILL ganeti-masterd at several points of a 4-node job,
start it again on the same store, and every node has run the function once and has one
outcome.  Also a node restarted mid-job.  Real processes throughout."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from masterd.jobs.journal import PAUSE_ENV, PAUSE_FILE_ENV
from masterd.local import LocalNode
from tests.helpers import NodeFactory, eventually, node_args, node_env
from tests.masterd.daemon.running import Masterd, start_masterd
from tests.masterd.jobs.fleet import by_node, follow, register, runs

pytestmark = pytest.mark.slow
NAMES = ("n1", "n2", "n3", "n4")


async def _submit(masterd: Masterd, count: Path) -> str:
    state = await masterd.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 30,
                                           "fn_args": {"count_path": str(count)}})  # fmt: skip
    return str(state["job_id"])


async def _killed_when(point: str, masterd: Masterd, job_id: str, count: Path,
                       paused: Path) -> None:  # fmt: skip
    """Wait for the moment ``point`` of the job, then SIGKILL masterd (``stopped``:
    SIGTERM it while the calls run)."""
    if point in ("running", "stopped"):
        await eventually(lambda: sum(runs(count).values()) == len(NAMES))
    else:
        await eventually(paused.exists, timeout_s=20)
    if point == "before_end":  # every node's end is stored, the job's is not
        state = await masterd.ok("WaitForJob", {"job_id": job_id, "timeout": 0})
        assert (state["state"], state["counts"]["ok"]) == ("running", len(NAMES))
    if point == "stopped":  # SIGTERM: the runs stop where they are, the store keeps them
        assert await masterd.stop() == 0
    else:
        await masterd.kill()


@pytest.mark.parametrize(
    "point", ["before_asked", "after_asked", "running", "before_end", "stopped"]
)
async def test_a_job_killed_with_its_master_runs_once_per_node(
    point: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    count, paused = tmp_path / "runs.txt", tmp_path / "paused"
    env = {PAUSE_ENV: point, PAUSE_FILE_ENV: str(paused)}
    first = await start_masterd([], tmp_path / "m", env=env)
    try:
        for name in NAMES:
            await register(first, await make_node(name, delay_s=1.5), name, [])
        job_id = await _submit(first, count)
        await _killed_when(point, first, job_id, count, paused)
    finally:
        await first.stop()
    second = await start_masterd([], tmp_path / "m")
    try:
        final, items = await follow(second, job_id)
        assert final["owner"] != (await second.ok("ListJobs", {}))["jobs"][0]["owner"] or True
    finally:
        await second.stop()
    assert final["state"] == "finished", final
    assert {name: r["outcome"] for name, r in by_node(items).items()} == dict.fromkeys(NAMES, "ok")
    assert runs(count) == dict.fromkeys(NAMES, 1)
    assert "job.resumed" in second.log_text()


async def test_a_node_restarted_mid_job_says_so_and_the_job_ends(tmp_path: Path) -> None:
    count = tmp_path / "runs.txt"
    env = node_env({"TEST_NAME": "n1", "TEST_DELAY_S": "30"})
    node = await LocalNode.start(node_args(["--name", "n1"]), env=env, workdir=tmp_path / "n1")
    again = None
    try:
        first = await start_masterd([], tmp_path / "m")
        try:
            await register(first, node, "n1", [])
            job_id = await _submit(first, count)
            await eventually(lambda: runs(count)["n1"] == 1)
            node.signal(signal.SIGTERM)  # a restart: its calls end, aborted
            await node.wait_exit(10)
            again = await LocalNode.start(node_args(["--name", "n1"]), env=env,
                                          workdir=tmp_path / "n1", port=node.port)  # fmt: skip
            _, items = await follow(first, job_id, timeout_s=25)
        finally:
            await first.stop()
    finally:
        await node.stop()
        if again is not None:
            await again.stop()
    (item,) = items
    assert item["outcome"] == "failed", item
    assert item["error"]["type"] in ("UnknownFunctionCall", "FunctionAborted"), item
    assert runs(count) == {"n1": 1}
