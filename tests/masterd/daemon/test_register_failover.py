"""Register across two real ganeti-masterd on one real PostgreSQL is idempotent (attack16
defect 8): a node that fails over and sends the same Register to another master, or to
both at once, has its restart recorded once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.masterd.daemon.running import Masterd, registration, run_masterd

pytestmark = pytest.mark.slow


async def _restarts(masterd: Masterd) -> list[dict[str, Any]]:
    answer = await masterd.ok("WaitForEvents", {"from": 0, "timeout": 0,
                                                "types": ["node.restarted"]})  # fmt: skip
    return [event["data"] for event in answer["events"]]


async def test_one_restart_sent_to_two_masters_is_recorded_once(
    postgres_url: str, tmp_path: Path
) -> None:
    args = ["--store", postgres_url]
    async with (
        run_masterd(args, workdir=tmp_path / "a") as first,
        run_masterd(args, workdir=tmp_path / "b") as second,
    ):
        node = registration("n1", instance="i1")
        await first.ok("Register", node)
        await second.ok("Register", {**node, "instance": "i2"})  # restarted, reached B
        await first.ok("Register", {**node, "instance": "i2"})  # failed over back to A
        assert [(d["old_instance"], d["instance"]) for d in await _restarts(first)] == [
            ("i1", "i2")]  # fmt: skip
        again = {**node, "instance": "i3"}
        await asyncio.gather(first.ok("Register", again), second.ok("Register", again))
        restarts = [(d["old_instance"], d["instance"]) for d in await _restarts(second)]
        assert restarts == [("i1", "i2"), ("i2", "i3")]
