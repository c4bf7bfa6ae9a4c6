"""A running job through a store outage (issue 32, "The store going away"): PostgreSQL
stops while a 4-node job runs on real nodes (or an SQLite store's disk is full), the job
pauses (503 ``StoreUnavailable`` to its readers meanwhile, masterd running on), and goes
on once the store is back: every node ran once and has one outcome, nothing skipped,
nothing stored twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from masterd.local import LocalNode
from tests.disks import small_disk
from tests.helpers import NodeFactory, eventually
from tests.masterd.daemon.running import Masterd, run_masterd, until
from tests.masterd.jobs.fleet import by_node, follow, register, runs
from tests.postgres import PostgresServer

NAMES = ("n1", "n2", "n3", "n4")
OUTAGE_S = 3.0


async def _submit(masterd: Masterd, count: Path) -> str:
    """One node at a time, a second each: nodes end and start while the store is away."""
    state = await masterd.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 60,
                                           "window": 1,
                                           "fn_args": {"count_path": str(count)}})  # fmt: skip
    return str(state["job_id"])


async def _refused(masterd: Masterd, job_id: str, seen: list[int]) -> bool:
    """WaitForJob is 503 StoreUnavailable (with Retry-After) while the store is away."""
    status, answer, headers = await masterd.put("WaitForJob", {"job_id": job_id, "timeout": 0})
    seen.append(status)
    if status != 503:
        return False
    assert answer["error"]["type"] == "StoreUnavailable" and int(headers["Retry-After"]) >= 1
    return True


async def _answered(masterd: Masterd, job_id: str) -> bool:
    """The store is back: WaitForJob answers again."""
    status, _, _ = await masterd.put("WaitForJob", {"job_id": job_id, "timeout": 0})
    return status == 200


def _assert_once_each(final: dict, items: list, count: Path) -> None:
    assert final["state"] == "finished", final
    assert {name: r["outcome"] for name, r in by_node(items).items()} == dict.fromkeys(NAMES, "ok")
    assert final["counts"]["ok"] == len(NAMES)
    assert runs(count) == dict.fromkeys(NAMES, 1)


@pytest.mark.slow
async def test_a_job_pauses_through_a_postgres_outage_and_goes_on_once_per_node(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    count = tmp_path / "runs.txt"
    async with run_masterd(["--store", postgres_url, "--heartbeat-s", "1"],
                           workdir=tmp_path / "m") as masterd:  # fmt: skip
        for name in NAMES:
            await register(masterd, await make_node(name, delay_s=1), name, [])
        job_id = await _submit(masterd, count)
        await eventually(lambda: sum(runs(count).values()) >= 1)
        statuses: list[int] = []
        await asyncio.to_thread(postgres_server.stop)
        try:
            stopped = time.monotonic()
            await until(lambda: _refused(masterd, job_id, statuses), timeout_s=OUTAGE_S * 3)
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            assert sum(runs(count).values()) < len(NAMES), "the job ended before the outage"
        finally:
            await asyncio.to_thread(postgres_server.start)
        await until(lambda: _answered(masterd, job_id), timeout_s=30)
        final, items = await follow(masterd, job_id, timeout_s=60)
        assert masterd.proc.poll() is None, "masterd exited"
    _assert_once_each(final, items, count)
    assert 500 not in statuses
    log = masterd.log_text()
    assert "Traceback" not in log and "job.stalled" not in log
    assert log.count("job.paused") == 1, "the pause is logged once per outage"
    assert "job.unpaused" in log


def _met_the_full_disk(masterd: Masterd) -> bool:
    """The job paused (or, without the pause, stopped) at a write the disk refused."""
    return any(what in masterd.log_text() for what in ("job.paused", "job.stalled"))


async def _calls_of(node: LocalNode, fn_name: str) -> int:
    """How many calls of ``fn_name`` the node started (running and retained)."""
    client = node.client()
    try:
        return sum(call["fn_name"] == fn_name for call in await client.list_functions())
    finally:
        await client.close()


@pytest.mark.slow
async def test_a_job_pauses_while_its_sqlite_disk_is_full_and_goes_on_once_per_node(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    """Results too big for what is left of a full disk (a tmpfs of the test's own): the
    job pauses with its results in memory (reads go on), and stores them once the disk
    has room again; each node ran once."""
    size = 900_000
    with small_disk(tmp_path / "disk", size="4m") as disk:
        store = f"sqlite:///{disk.path / 'masterd.sqlite3'}"
        async with run_masterd(["--store", store], workdir=tmp_path / "m") as masterd:
            nodes = {name: await make_node(name) for name in ("n1", "n2")}
            for name, node in nodes.items():
                await register(masterd, node, name, [])
            disk.fill(leave_bytes=200_000)
            state = await masterd.ok("SubmitJob", {"fn_name": "big", "fn_args": {"size": size},
                                                   "window": 1})  # fmt: skip
            await eventually(lambda: _met_the_full_disk(masterd), timeout_s=20)
            paused = await masterd.ok("WaitForJob", {"job_id": state["job_id"], "timeout": 0})
            disk.free()
            final, items = await follow(masterd, state["job_id"], timeout_s=60)
            assert masterd.proc.poll() is None, "masterd exited"
        log = masterd.log_text()
    assert paused["state"] == "running" and paused["counts"]["ok"] == 0, paused
    assert final["state"] == "finished", final
    assert {item["node"]: (item["outcome"], len(item["result"])) for item in items} == {
        "n1": ("ok", size), "n2": ("ok", size)}  # fmt: skip
    assert [await _calls_of(node, "big") for node in nodes.values()] == [1, 1]
    assert "job.stalled" not in log and "job.paused" in log
