"""Two real ganeti-masterd on one real PostgreSQL: an AbortJob sent to the master that
does not own the job is acted on by the owner (its NOTIFY), and an owner paused past its
lease that lost its job records nothing more for it (every record is fenced)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.helpers import NodeFactory, eventually
from tests.masterd.daemon.running import Masterd, run_masterd, until
from tests.masterd.jobs.fleet import by_node, follow, register, runs

pytestmark = pytest.mark.slow
NAMES = ("n1", "n2", "n3", "n4")


def _args(postgres_url: str) -> list[str]:
    return ["--store", postgres_url, "--heartbeat-s", "1", "--lease-s", "3"]


def _outcomes(items: list[dict]) -> dict[str, tuple[str, str | None]]:
    return {name: (r["outcome"], (r["error"] or {}).get("type"))
            for name, r in by_node(items).items()}  # fmt: skip


@pytest.mark.parametrize("calls", [False, True])
async def test_an_abort_sent_to_the_other_master_is_acted_on_by_the_owner(
    calls: bool, postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    """A one-at-a-time job on A; AbortJob to B while n1 runs.  Before, B stored the flag
    and A, never told, started n2, n3 and n4: the job ended ``finished``, 4 ok."""
    count = tmp_path / "runs.txt"
    async with (
        run_masterd(_args(postgres_url), workdir=tmp_path / "a") as owner,
        run_masterd(_args(postgres_url), workdir=tmp_path / "b") as other,
    ):
        for name in NAMES:
            await register(owner, await make_node(name, delay_s=3), name, [])
        state = await owner.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 60,
                                             "window": 1,
                                             "fn_args": {"count_path": str(count)}})  # fmt: skip
        await eventually(lambda: sum(runs(count).values()) == 1)
        await other.ok("AbortJob", {"job_id": state["job_id"], "calls": calls})
        final, items = await follow(owner, state["job_id"], timeout_s=30)
    assert final["state"] == "aborted", final
    first = ("failed", "FunctionAborted") if calls else ("ok", None)
    assert _outcomes(items) == {"n1": first, **dict.fromkeys(NAMES[1:], ("skipped", "Skipped"))}
    assert runs(count) == {"n1": 1}


async def test_an_owner_that_lost_its_job_records_nothing_more(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    """All four calls started by A; A SIGSTOPped past its lease; B takes the job over and
    waits for the calls; A SIGCONTed while they still run.  Before, A (only its starts
    fenced) recorded their ends and the job's end too (two owners acting): now its first
    record is refused and its run ends there (job.not_held), B alone ends the job."""
    count = tmp_path / "runs.txt"
    async with (
        run_masterd(_args(postgres_url), workdir=tmp_path / "a") as owner,
        run_masterd(_args(postgres_url), workdir=tmp_path / "b") as other,
    ):
        for name in NAMES:
            await register(owner, await make_node(name, delay_s=8), name, [])
        state = await owner.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 60,
                                             "fn_args": {"count_path": str(count)}})  # fmt: skip
        await eventually(lambda: sum(runs(count).values()) == len(NAMES))
        owner.proc.send_signal(signal.SIGSTOP)
        try:
            await until(lambda: _logged(other, "job.resumed"), timeout_s=20)
        finally:
            owner.proc.send_signal(signal.SIGCONT)
        final, items = await follow(other, state["job_id"], timeout_s=30)
        await until(lambda: _logged(owner, "job.not_held"), timeout_s=15)
    assert final["state"] == "finished", final
    assert _outcomes(items) == dict.fromkeys(NAMES, ("ok", None))
    assert runs(count) == dict.fromkeys(NAMES, 1)
    assert "job.ended" not in owner.log_text()
    assert "job.ended" in other.log_text()


async def _logged(masterd: Masterd, what: str) -> bool:
    return what in masterd.log_text()
