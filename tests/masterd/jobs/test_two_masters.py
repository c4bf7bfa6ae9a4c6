"""Jobs on two real ganeti-masterd on one real PostgreSQL (issue 32, "Faults"): one
``request_id`` submitted to both at the same moment is one job, whichever master each
submit reached, and the job runs once on its node; an owner woken after the other took
its job over ends its run at the fence, recording nothing more."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import NodeFactory, eventually
from tests.masterd.daemon.running import Masterd, run_masterd, until
from tests.masterd.jobs.fleet import by_node, follow, register, runs

pytestmark = pytest.mark.slow
SUBMITS_EACH = 4


def _args(postgres_url: str) -> list[str]:
    return ["--store", postgres_url, "--heartbeat-s", "1", "--lease-s", "3"]


async def _knows(masterd: Masterd, name: str) -> bool:
    return name in await masterd.nodes()


async def _submit_at_once(masters: list[Masterd], bodies: list[dict[str, Any]]) -> list[Any]:
    """Every body to every master, all sent together: (status, answer) each."""
    sends = [m.put("SubmitJob", body) for body in bodies for m in masters]
    return [(status, answer) for status, answer, _ in await asyncio.gather(*sends)]


async def test_one_request_id_sent_to_two_masters_at_once_is_one_job(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    count = tmp_path / "runs.txt"
    body = {"fn_name": "node_behaviour", "fn_args": {"count_path": str(count)},
            "nodes": ["n1"], "timeout": 10, "request_id": "deploy-43"}  # fmt: skip
    async with (
        run_masterd(_args(postgres_url), workdir=tmp_path / "a") as first,
        run_masterd(_args(postgres_url), workdir=tmp_path / "b") as second,
    ):
        await register(first, await make_node("n1", delay_s=0.5), "n1", [])
        await until(lambda: _knows(second, "n1"), timeout_s=15)
        answers = await _submit_at_once([first, second], [body] * SUBMITS_EACH)
        assert {status for status, _ in answers} == {200}, answers
        job_ids = {answer["job_id"] for _, answer in answers}
        assert len(job_ids) == 1, answers
        (job_id,) = job_ids
        final, items = await follow(second, job_id)
        for master in (first, second):
            listed = await master.ok("ListJobs", {"limit": None})
            assert [job["job_id"] for job in listed["jobs"]] == [job_id]
    assert final["state"] == "finished" and [item["node"] for item in items] == ["n1"]
    assert runs(count) == {"n1": 1}


async def test_one_request_id_with_other_arguments_at_once_is_one_job_and_conflicts(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    """Two different submits with one key, each to both masters at once: the first
    stored is the job; every other answer is that job or 409 RequestIdConflict."""
    base = {"fn_name": "node_behaviour", "nodes": ["n1"], "request_id": "deploy-44"}
    bodies = [{**base, "timeout": 10}, {**base, "timeout": 11}]
    async with (
        run_masterd(_args(postgres_url), workdir=tmp_path / "a") as first,
        run_masterd(_args(postgres_url), workdir=tmp_path / "b") as second,
    ):
        await register(first, await make_node("n1"), "n1", [])
        await until(lambda: _knows(second, "n1"), timeout_s=15)
        answers = await _submit_at_once([first, second], bodies * 2)
        listed = await first.ok("ListJobs", {"limit": None})
        (job,) = listed["jobs"]
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 409} and 200 in statuses and 409 in statuses, answers
    assert {answer["job_id"] for status, answer in answers if status == 200} == {job["job_id"]}
    assert {answer["error"]["type"] for status, answer in answers if status == 409} == {
        "RequestIdConflict"
    }


async def test_an_owner_woken_after_a_takeover_takes_no_node_for_failed(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    """SIGSTOP the owner of a one-at-a-time job while its first node runs; SIGCONT it
    once the other master has taken the job over and started the next node.  The old
    owner's next start is refused (the fence): its whole run ends there, and it records
    no outcome for that node (it once stored ``failed``, and the node's real result, from
    the new owner, was then dropped)."""
    names = ("n1", "n2", "n3")
    count = tmp_path / "runs.txt"
    async with (
        run_masterd(_args(postgres_url), workdir=tmp_path / "a") as owner,
        run_masterd(_args(postgres_url), workdir=tmp_path / "b") as other,
    ):
        for name in names:
            await register(owner, await make_node(name, delay_s=1.5), name, [])
        state = await owner.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 60,
                                             "window": 1,
                                             "fn_args": {"count_path": str(count)}})  # fmt: skip
        await eventually(lambda: sum(runs(count).values()) == 1)
        owner.proc.send_signal(signal.SIGSTOP)
        try:
            await eventually(lambda: sum(runs(count).values()) == 2, timeout_s=30)
        finally:
            owner.proc.send_signal(signal.SIGCONT)
        final, items = await follow(other, state["job_id"], timeout_s=60)
        assert final["state"] == "finished", final
        outcomes = {name: (r["outcome"], r["error"]) for name, r in by_node(items).items()}
        assert outcomes == dict.fromkeys(names, ("ok", None))
        assert runs(count) == dict.fromkeys(names, 1)
        await until(lambda: _logged(owner, "job.not_held"), timeout_s=15)


async def _logged(masterd: Masterd, what: str) -> bool:
    return what in masterd.log_text()
