"""Two real ganeti-masterd on one real PostgreSQL (issue 32): the registry, the events and
Register's ``masters`` are shared; a SIGKILLed masterd drops out of ``masters``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.masterd.daemon.running import (
    Masterd,
    events,
    registration,
    run_masterd,
    start_masterd,
    until,
)

HEARTBEAT_S = 1.0  # flushes every second
LEASE_S = 3.0  # renewals every second; a master and its jobs lapse after 3 s


@pytest.fixture
async def masters(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[Masterd, Masterd]]:
    args = ["--store", postgres_url, "--heartbeat-s", str(HEARTBEAT_S), "--lease-s", str(LEASE_S)]
    started = await asyncio.gather(
        *(start_masterd(args, tmp_path / name) for name in "ab"), return_exceptions=True
    )
    try:
        for result in started:
            if isinstance(result, BaseException):
                raise result
        yield started[0], started[1]  # type: ignore[misc]
    finally:
        await asyncio.gather(*(m.stop() for m in started if isinstance(m, Masterd)))


async def masters_of(masterd: Masterd, node: dict[str, Any]) -> list[str]:
    return list((await masterd.ok("Register", node))["masters"])


async def test_a_node_registered_through_one_is_listed_alive_by_the_other(
    masters: tuple[Masterd, Masterd],
) -> None:
    first, second = masters
    node = registration("n1")
    await first.ok("Register", node)

    async def listed_alive() -> bool:
        return (await second.nodes()).get("n1", {}).get("state") == "alive"

    await until(listed_alive)
    assert (await second.nodes())["n1"]["uuid"] == node["uuid"]
    # heartbeats to the second keep it alive on the first (any master heard from it)
    heartbeat = {"uuid": node["uuid"], "instance": node["instance"], "running": 0}
    assert (await second.ok("Heartbeat", heartbeat))["reregister"] is False
    seen = (await second.nodes())["n1"]["last_seen"]

    async def first_heard_of_it() -> bool:
        return float((await first.nodes())["n1"]["last_seen"]) >= seen

    await until(first_heard_of_it)


async def test_a_job_by_labels_on_one_reaches_a_node_just_registered_through_the_other(
    masters: tuple[Masterd, Masterd],
) -> None:
    """SubmitJob reads the registry from the store first: without it, the second master
    knew of the node only at its next renewal, and the job found no node."""
    first, second = masters
    await first.ok("Register", registration("n1", labels=["fresh"]))
    body = {"fn_name": "echo", "fn_args": {"value": 1}, "labels": ["fresh"], "timeout": 1}
    submitted = await second.ok("SubmitJob", body)
    job = await second.ok("WaitForJob", {"job_id": submitted["job_id"], "timeout": 0})
    assert (
        job["counts"]["pending"]
        + job["counts"]["running"]
        + sum(job["counts"][o] for o in ("ok", "failed", "timed_out", "unreachable", "skipped"))
        == 1
    ), job


async def test_registers_masters_names_both(masters: tuple[Masterd, Masterd]) -> None:
    first, second = masters
    node = registration("n1")
    both = sorted([first.address, second.address])

    for masterd in masters:  # each within a renewal of the other's start
        await until(lambda m=masterd: _named(m, node, both))  # type: ignore[misc]


async def test_an_event_reported_to_one_wakes_a_waiter_on_the_other(
    masters: tuple[Masterd, Masterd],
) -> None:
    first, second = masters
    node = registration("n1")
    await first.ok("Register", node)
    report = {"uuid": node["uuid"], "spool": "spool-1", "events": events(1)}
    await first.ok("Report", report)  # the second is listening once it has seen this one

    async def second_has_it() -> bool:
        answer = await second.ok("WaitForEvents", {"from": 0, "timeout": 0, "types": ["disk.*"]})
        return len(answer["events"]) == 1

    await until(second_has_it)
    latencies = []
    for seq in range(2, 7):
        waiting = asyncio.create_task(
            second.ok("WaitForEvents", {"from": None, "timeout": 10, "types": ["disk.*"]})
        )
        await asyncio.sleep(0.2)  # the waiter is parked
        await first.ok("Report", {**report, "events": events(seq)})
        reported = time.monotonic()
        async with asyncio.timeout(10):
            answer = await waiting
        latencies.append(time.monotonic() - reported)
        assert [e["seq"] for e in answer["events"]] == [seq]
    # NOTIFY, not the 1 s fallback poll (the median; a loaded machine may delay one)
    assert sorted(latencies)[len(latencies) // 2] < 0.5, latencies


async def test_a_seq_reported_to_both_is_stored_once(masters: tuple[Masterd, Masterd]) -> None:
    first, second = masters
    node = registration("n1")
    await first.ok("Register", node)
    await until(lambda: _knows(second, "n1"))
    report = {"uuid": node["uuid"], "spool": "spool-1", "events": events(1, 2, 3)}
    acked = await asyncio.gather(first.ok("Report", report), second.ok("Report", report))
    assert [a["acked"] for a in acked] == [3, 3]
    answer = await second.ok("WaitForEvents", {"from": 0, "timeout": 0, "types": ["disk.*"]})
    assert sorted(e["seq"] for e in answer["events"]) == [1, 2, 3]


async def _named(masterd: Masterd, node: dict[str, Any], expected: list[str]) -> bool:
    return sorted(await masters_of(masterd, node)) == expected


async def _knows(masterd: Masterd, name: str) -> bool:
    return name in await masterd.nodes()


@pytest.mark.slow
async def test_a_sigkilled_master_drops_out_of_masters(postgres_url: str, tmp_path: Path) -> None:
    args = ["--store", postgres_url, "--heartbeat-s", str(HEARTBEAT_S), "--lease-s", str(LEASE_S)]
    node = registration("n1")
    async with run_masterd(args, workdir=tmp_path / "a") as first:
        async with run_masterd(args, workdir=tmp_path / "b") as second:
            await until(lambda: _names(first, node, 2))
            await second.kill()
            killed = time.monotonic()
            await until(lambda: _names(first, node, 1), timeout_s=15)
            assert await masters_of(first, node) == [first.address]
            # its lease lapsed, and at most one more renewal to notice
            assert time.monotonic() - killed < 2 * LEASE_S + 2


async def _names(masterd: Masterd, node: dict[str, Any], count: int) -> bool:
    return len(await masters_of(masterd, node)) == count
