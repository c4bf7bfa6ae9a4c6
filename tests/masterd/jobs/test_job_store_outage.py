"""A running job through a store outage (issue 32, "The store going away"): the store
stops while a 4-node job runs on real nodes, the job pauses (503 ``StoreUnavailable`` to
its readers meanwhile, masterd running on), and goes on once the store is back: every
node ran once and has one outcome, nothing skipped, nothing stored twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

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
