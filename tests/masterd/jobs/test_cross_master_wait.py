"""WaitForJob sent to a master that does not run the job (two real ganeti-masterd on one
real PostgreSQL): woken by the owner's commits (its NOTIFY), as a waiter on the owner is,
not at its timeout (attack16 defect 4: the other master's waiter slept its whole timeout).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import NodeFactory
from tests.masterd.daemon.running import Masterd, run_masterd, until
from tests.masterd.jobs.fleet import register

pytestmark = pytest.mark.slow
WAIT_S = 20
#: how much later than the owner's own waiter the other's may answer (PROTOCOL.md:
#: "about 100 ms"; generous for a loaded test machine)
LATE_S = 1.0


async def _knows(masterd: Masterd, name: str) -> bool:
    return name in await masterd.nodes()


async def _answered_at(masterd: Masterd, body: dict[str, Any]) -> tuple[float, Any]:
    answer = await masterd.ok("WaitForJob", body, timeout_s=WAIT_S + 10)
    return time.monotonic(), answer


async def test_wait_for_job_on_another_master_is_woken_by_the_owners_commits(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    args = ["--store", postgres_url, "--heartbeat-s", "1"]
    async with (
        run_masterd(args, workdir=tmp_path / "a") as owner,
        run_masterd(args, workdir=tmp_path / "b") as other,
    ):
        for name in ("n1", "n2"):
            await register(owner, await make_node(name, delay_s=1), name, [])
        await until(lambda: _knows(other, "n2"), timeout_s=15)
        state = await owner.ok("SubmitJob", {"fn_name": "node_behaviour", "window": 1,
                                             "nodes": ["n1", "n2"], "timeout": 10})  # fmt: skip
        first = {"job_id": state["job_id"], "timeout": WAIT_S, "results_from": 0}
        (on_owner, by_owner), (on_other, by_other) = await asyncio.gather(
            _answered_at(owner, first), _answered_at(other, first))  # fmt: skip
        assert on_other - on_owner < LATE_S, (on_other - on_owner, by_owner)
        assert [i["node"] for i in by_other["results"]["items"]] == ["n1"]
        end = {"job_id": state["job_id"], "timeout": WAIT_S, "results_from": 1}
        (on_owner, _), (on_other, by_other) = await asyncio.gather(
            _answered_at(owner, end), _answered_at(other, end))  # fmt: skip
        assert on_other - on_owner < LATE_S
        assert [i["node"] for i in by_other["results"]["items"]] == ["n2"]
        ended = {"job_id": state["job_id"], "timeout": WAIT_S}
        began = time.monotonic()
        while (await other.ok("WaitForJob", ended, timeout_s=WAIT_S + 10))["state"] != "finished":
            assert time.monotonic() - began < LATE_S, "the job's end did not wake the waiter"
