"""AbortJob against real nodes: a node whose start was recorded ends with its true outcome
after a restart (waited for, or with ``calls`` aborted on its node), never ``skipped``;
an abort that comes while a node's start is being recorded skips that node (it is never
sent), and is never left running ``ok`` in an aborted job."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from masterd.jobs.runner import JobRun
from masterd.store.jobs import QUEUED, JobNode, JobProgress, JobRecord, JobSpec
from masterd.store.sqlite import SQLiteStore
from tests.helpers import NodeFactory, eventually
from tests.masterd.daemon.running import start_masterd
from tests.masterd.jobs.fleet import by_node, follow, register, runs

NAMES = ("n1", "n2", "n3")
STORE_FILE = "state/masterd.sqlite3"


def _outcomes(items: list[dict]) -> dict[str, tuple[str, str | None]]:
    return {name: (r["outcome"], (r["error"] or {}).get("type"))
            for name, r in by_node(items).items()}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("calls", [False, True])
async def test_a_restart_after_an_abort_takes_each_started_nodes_true_end(
    calls: bool, tmp_path: Path, make_node: NodeFactory
) -> None:
    """All three calls run; the job is aborted (``calls``: the abort stored, its calls
    not yet aborted on their nodes, as when masterd dies right after answering), masterd
    is SIGKILLed and started again.  Before, every node ended ``skipped`` ("not started")
    and its call ran on to ``ok``, never aborted."""
    count = tmp_path / "runs.txt"
    first = await start_masterd([], tmp_path / "m")
    try:
        for name in NAMES:
            await register(first, await make_node(name, delay_s=4), name, [])
        state = await first.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 60,
                                             "fn_args": {"count_path": str(count)}})  # fmt: skip
        await eventually(lambda: sum(runs(count).values()) == len(NAMES))
        if not calls:
            answer = await first.ok("AbortJob", {"job_id": state["job_id"]})
            assert answer["counts"]["running"] == len(NAMES), answer
    finally:
        await first.kill()
    if calls:
        with sqlite3.connect(tmp_path / "m" / STORE_FILE) as db:
            db.execute("UPDATE jobs SET abort = 'calls' WHERE id = ?", (state["job_id"],))
    second = await start_masterd([], tmp_path / "m")
    try:
        final, items = await follow(second, state["job_id"], timeout_s=30)
    finally:
        await second.stop()
    assert final["state"] == "aborted", final
    end = ("failed", "FunctionAborted") if calls else ("ok", None)
    assert _outcomes(items) == dict.fromkeys(NAMES, end)
    assert all(item["fnc_id"] for item in items), items
    assert runs(count) == dict.fromkeys(NAMES, 1)


class _HeldStarts(SQLiteStore):
    """The real SQLite store, whose start records wait until ``release`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.recording = asyncio.Event()
        self.release = asyncio.Event()

    async def record_asked(self, job_id: str, node: str, request_id: str, at: float) -> None:
        self.recording.set()
        await asyncio.wait_for(self.release.wait(), 10)
        await super().record_asked(job_id, node, request_id, at)


async def test_an_abort_while_a_start_is_recorded_skips_that_node(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    """AbortJob{calls} comes while the node's start record is committing.  Before, the
    start was then sent without a look at the abort, and (not yet in the list of calls
    to abort) ran to ``ok`` in an ``aborted`` job."""
    count = tmp_path / "runs.txt"
    node = await make_node("n1", delay_s=1)
    store = _HeldStarts(tmp_path / "store.sqlite3")
    await store.open()
    try:
        spec = JobSpec(fn_name="node_behaviour", fn_args={"count_path": str(count)},
                       nodes=(JobNode("n1", node.host, node.port),), timeout_s=30)  # fmt: skip
        job = JobRecord(id="j1", spec=spec, request={}, request_id=None, state=QUEUED,
                        owner="me", abort=None, submitted=0.0)  # fmt: skip
        await store.add_job(job)
        run = JobRun(store, job, JobProgress(), max_result_bytes=1 << 20, on_change=lambda: None)
        task = asyncio.create_task(run.run())
        await asyncio.wait_for(store.recording.wait(), 10)
        await store.abort_job(job.id, True)
        run.abort(calls=True)
        store.release.set()
        await asyncio.wait_for(task, 20)
        (result,) = await store.job_results(job.id, 0, 10)
        head = await store.get_job_head(job.id)
    finally:
        await store.close()
    assert head is not None and head.state == "aborted", head
    assert (result.outcome, (result.error or {}).get("type")) == ("skipped", "Skipped"), result
    assert runs(count) == {}, "the node was started after the abort"
