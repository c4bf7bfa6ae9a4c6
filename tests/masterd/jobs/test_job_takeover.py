"""Jobs across two real ganeti-masterd on one real PostgreSQL (issue 32, item 3): the
owner SIGKILLed or SIGSTOPped past its lease, the other takes the job over and finishes
it, each node running once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.helpers import NodeFactory, eventually
from tests.masterd.daemon.running import run_masterd, start_masterd
from tests.masterd.jobs.fleet import by_node, follow, register, runs

pytestmark = pytest.mark.slow
HEARTBEAT_S = 1.0
LEASE_S = 3.0  # renewed every second; a silent owner's jobs go to the other after 3 s


def masterd_args(postgres_url: str) -> list[str]:
    return ["--store", postgres_url, "--heartbeat-s", str(HEARTBEAT_S), "--lease-s", str(LEASE_S)]


async def test_a_sigkilled_owners_job_is_finished_by_the_other_once_per_node(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    names = ("n1", "n2", "n3", "n4")
    count = tmp_path / "runs.txt"
    args = masterd_args(postgres_url)
    owner = await start_masterd(args, tmp_path / "a")
    try:
        async with run_masterd(args, workdir=tmp_path / "b") as other:
            for name in names:
                await register(owner, await make_node(name, delay_s=2), name, [])
            job = {"fn_name": "node_behaviour", "timeout": 60,
                   "fn_args": {"count_path": str(count)}}  # fmt: skip
            state = await owner.ok("SubmitJob", job)
            await eventually(lambda: sum(runs(count).values()) == len(names))
            await owner.kill()  # every node runs its call; the owner is gone
            final, items = await follow(other, state["job_id"], timeout_s=60)
    finally:
        await owner.stop()
    assert final["state"] == "finished", final
    assert {name: r["outcome"] for name, r in by_node(items).items()} == dict.fromkeys(names, "ok")
    assert runs(count) == dict.fromkeys(names, 1)
    assert "job.resumed" in other.log_text()


async def test_an_owner_paused_past_its_lapse_starts_nothing_more(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    """SIGSTOP the owner of a one-at-a-time job; the other takes it over and finishes
    it; SIGCONT the old owner: it starts no node (each node ran once)."""
    names = ("n1", "n2", "n3", "n4")
    count = tmp_path / "runs.txt"
    args = masterd_args(postgres_url)
    async with (
        run_masterd(args, workdir=tmp_path / "a") as owner,
        run_masterd(args, workdir=tmp_path / "b") as other,
    ):
        for name in names:
            await register(owner, await make_node(name, delay_s=2), name, [])
        job = {"fn_name": "node_behaviour", "timeout": 60, "window": 1,
               "fn_args": {"count_path": str(count)}}  # fmt: skip
        state = await owner.ok("SubmitJob", job)
        await eventually(lambda: sum(runs(count).values()) == 1)
        owner.proc.send_signal(signal.SIGSTOP)
        try:
            final, items = await follow(other, state["job_id"], timeout_s=90)
        finally:
            owner.proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(3 * HEARTBEAT_S)  # the old owner's run goes on from its pause
        assert runs(count) == dict.fromkeys(names, 1)
    assert final["state"] == "finished", final
    assert {name: r["outcome"] for name, r in by_node(items).items()} == dict.fromkeys(names, "ok")
