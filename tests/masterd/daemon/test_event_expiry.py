"""Events expire (``--event-ttl``): a real ganeti-masterd deletes the events stored
longer ago than that in the background, and goes on storing and answering new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.masterd.daemon.running import events, registration, run_masterd, until


async def test_old_events_expire_and_new_ones_are_still_stored(tmp_path: Path) -> None:
    async with run_masterd(["--event-ttl", "1"], workdir=tmp_path) as masterd:
        node = registration("n1")
        await masterd.ok("Register", node)
        report = {"uuid": node["uuid"], "spool": "s", "events": events(1, 2, 3)}
        assert (await masterd.ok("Report", report))["acked"] == 3

        async def read() -> list[Any]:
            answer = await masterd.ok("WaitForEvents", {"from": 0, "timeout": 0})
            return [e for e in answer["events"] if e["node"] == "n1"]

        assert len(await read()) >= 3  # the registration's own event, and the three

        async def expired() -> bool:
            return await read() == []

        await until(expired, timeout_s=15)
        assert "events.expired" in masterd.log_text()
        later = {"uuid": node["uuid"], "spool": "s", "events": events(4)}
        assert (await masterd.ok("Report", later))["acked"] == 4
        assert [e["seq"] for e in await read()] == [4]
