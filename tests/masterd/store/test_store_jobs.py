"""The store's job methods, one suite for every backend (the fixtures of test_store)."""

from __future__ import annotations

import asyncio

import pytest

from masterd.store.jobs import JobNode, JobRecord, JobSpec, NewResult
from tests.masterd.store.test_store import Opener, backend, open_store, store_url

__all__ = ["backend", "open_store", "store_url"]


@pytest.fixture
async def jobs_store(open_store: Opener) -> Opener:
    """``open_store``, on a backend that has the job methods (PostgreSQL's: issue 32)."""
    store = await open_store()
    if not hasattr(store, "add_job"):
        pytest.skip(f"{type(store).__name__} has no job methods yet")
    await store.close()
    return open_store


def job(job_id: str = "j1", request_id: str | None = None, nodes: int = 3) -> JobRecord:
    spec = JobSpec(
        fn_name="f",
        fn_args={"a": 1},
        timeout_s=10.0,
        canary=1,
        nodes=tuple(JobNode(f"n{i}", "127.0.0.1", 1811 + i) for i in range(nodes)),
    )
    return JobRecord(id=job_id, spec=spec, request={"fn_name": "f"}, request_id=request_id,
                     state="queued", owner="m1", abort=None, submitted=100.0)  # fmt: skip


async def test_a_job_is_stored_with_its_nodes_in_order(jobs_store: Opener) -> None:
    store = await jobs_store()
    await store.add_job(job())
    stored = await store.get_job("j1")
    assert stored == job()
    assert await store.get_job("nope") is None
    assert await store.job_counts("j1") == {"pending": 3}


async def test_a_jobs_head_is_its_own_row_and_follows_its_state(jobs_store: Opener) -> None:
    store = await jobs_store()
    await store.add_job(job(nodes=50))
    assert await store.get_job_head("j1") == job().head()
    await store.abort_job("j1", calls=False)
    await store.set_job_state("j1", "aborted", 200.0)
    head = await store.get_job_head("j1")
    assert head is not None and (head.state, head.abort, head.ended) == ("aborted", "nodes", 200)
    assert await store.get_job_head("nope") is None


async def test_racing_adds_with_one_request_id_make_one_job(jobs_store: Opener) -> None:
    store = await jobs_store()
    added = await asyncio.gather(*(store.add_job(job(f"j{i}", "key")) for i in range(5)))
    assert len({record.id for record in added}) == 1
    assert len(await store.list_jobs(10)) == 1


async def test_a_nodes_records_and_its_one_end(jobs_store: Opener) -> None:
    store = await jobs_store()
    await store.add_job(job())
    await store.record_asked("j1", "n0", "r0", 1.0)
    await store.record_asked("j1", "n1", "r1", 2.5)
    await store.record_asked("j1", "n1", "r1", 9.0)  # asked again by a resume: kept at 2.5
    await store.record_started("j1", "n0", "1:2:3.000000:0123456789abcdef")
    first = await store.record_result("j1", NewResult("n1", "ok", None, {"x": 1}, None))
    again = await store.record_result("j1", NewResult("n1", "failed", None, None, {"type": "E"}))
    skipped = await store.record_result("j1", NewResult("n2", "skipped", None, None,
                                                        {"type": "Skipped"}))  # fmt: skip
    assert (first and first.seq, again, skipped and skipped.seq) == (0, None, 1)
    progress = await store.job_progress("j1")
    assert progress.request_ids == {"n0": "r0", "n1": "r1"}
    assert progress.asked == {"n0": 1.0, "n1": 2.5}  # a resumed call's timeout counts from
    assert progress.fnc_ids == {"n0": "1:2:3.000000:0123456789abcdef"}
    assert progress.results["n1"].result == {"x": 1}
    assert [r.node for r in await store.job_results("j1", 1, 10)] == ["n2"]
    assert await store.job_counts("j1") == {"running": 1, "ok": 1, "skipped": 1}


async def test_a_reopened_store_gives_its_unfinished_jobs_to_the_new_owner(
    jobs_store: Opener,
) -> None:
    store = await jobs_store()
    await store.add_job(job("j1"))
    await store.add_job(job("j2"))
    await store.set_job_state("j2", "finished", 200.0)
    await store.abort_job("j1", calls=True)
    await store.close()
    store = await jobs_store()
    (claimed,) = await store.claim_jobs("m2")
    assert (claimed.id, claimed.owner, claimed.abort) == ("j1", "m2", "calls")


async def test_ended_jobs_expire_with_their_records(jobs_store: Opener) -> None:
    store = await jobs_store()
    await store.add_job(job("j1"))
    await store.add_job(job("j2"))
    await store.set_job_state("j1", "finished", 200.0)
    assert await store.expire_jobs(300.0) == 1
    assert await store.get_job("j1") is None and await store.job_results("j1", 0, 10) == []
    assert await store.get_job("j2") is not None
