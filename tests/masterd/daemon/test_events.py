"""Report and WaitForEvents against a real ganeti-masterd, as nodes and an operator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import metric
from tests.masterd.daemon.backends import BACKENDS, store_args
from tests.masterd.daemon.running import Masterd, events, registration, run_masterd


@pytest.fixture(params=BACKENDS)
async def masterd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Masterd]:
    args = ["--max-report-events", "20", "--node-events-per-s", "40", "--max-wait", "5",
            *store_args(request)]  # fmt: skip
    async with run_masterd(args, workdir=tmp_path) as daemon:
        yield daemon


async def registered(masterd: Masterd, name: str) -> dict[str, Any]:
    body = registration(name)
    await masterd.ok("Register", body)
    return body


async def report(masterd: Masterd, node: dict[str, Any], *seqs: int, **kwargs: Any) -> int:
    body = {"uuid": node["uuid"], "spool": "spool-1", "events": events(*seqs, **kwargs)}
    return int((await masterd.ok("Report", body))["acked"])


async def read(masterd: Masterd, **request: Any) -> dict[str, Any]:
    return await masterd.ok("WaitForEvents", {"from": 0, "timeout": 0, **request})


async def test_each_seq_is_stored_once_and_acked_has_no_gap_below(masterd: Masterd) -> None:
    node = await registered(masterd, "n1")
    assert await report(masterd, node, 1, 2, 4) == 2
    assert await report(masterd, node, 1, 2, 3, 4) == 4  # a resend, with the missing one
    assert await report(masterd, node, 3, 4) == 4
    answer = await read(masterd, types=["disk.*"])
    assert sorted(e["seq"] for e in answer["events"]) == [1, 2, 3, 4]
    assert all(e["node"] == "n1" and e["data"] == {"seq": e["seq"]} for e in answer["events"])
    ids = [e["id"] for e in answer["events"]]
    assert ids == sorted(ids) and answer["next"] == ids[-1] + 1


async def test_a_report_from_an_unknown_uuid_is_not_registered(masterd: Masterd) -> None:
    status, answer, _ = await masterd.put(
        "Report", {"uuid": "nobody", "spool": "s", "events": events(1)}
    )
    assert status == 409 and answer["error"]["type"] == "NotRegistered"


async def test_a_waiting_reader_is_woken_by_a_report(masterd: Masterd) -> None:
    node = await registered(masterd, "n1")
    waiting = asyncio.create_task(
        masterd.ok("WaitForEvents", {"from": None, "timeout": 4, "types": ["app.*"]})
    )
    await asyncio.sleep(0.3)  # the reader waits (no event of its types yet)
    assert not waiting.done()
    sent = time.monotonic()
    await report(masterd, node, 1, type="app.ready", fnc_id="1:2:3.000000:0123456789abcdef")
    answer = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - sent < 2.0  # woken, not at the end of its 4 s
    (event,) = answer["events"]
    assert event["type"] == "app.ready" and event["fnc_id"].endswith("0123456789abcdef")


async def test_from_null_reads_only_new_events_and_a_timeout_answers_empty(
    masterd: Masterd,
) -> None:
    node = await registered(masterd, "n1")
    await report(masterd, node, 1)
    answer = await masterd.ok("WaitForEvents", {"from": None, "timeout": 0.2})
    last = (await read(masterd))["events"][-1]["id"]
    assert answer == {"events": [], "next": last + 1}
    await report(masterd, node, 2)
    following = await masterd.ok("WaitForEvents", {"from": answer["next"], "timeout": 1})
    assert [e["seq"] for e in following["events"]] == [2]


async def test_types_and_nodes_filter_the_events(masterd: Masterd) -> None:
    one, two = await registered(masterd, "n1"), await registered(masterd, "n2")
    await report(masterd, one, 1, type="disk.replacing")
    await report(masterd, one, 2, type="call.finish")
    await report(masterd, two, 1, type="disk.failed")
    disks = await read(masterd, types=["disk.*"])
    assert [(e["node"], e["type"]) for e in disks["events"]] == [
        ("n1", "disk.replacing"), ("n2", "disk.failed")
    ]  # fmt: skip
    of_two = await read(masterd, nodes=["n2"])
    assert {e["type"] for e in of_two["events"]} == {"node.registered", "disk.failed"}
    nothing = await read(masterd, types=["no.*"], nodes=["n1"])
    assert nothing["events"] == [] and nothing["next"] == disks["events"][-1]["id"] + 1


async def test_a_flooding_node_is_refused_and_counted_while_others_go_on(
    masterd: Masterd,
) -> None:
    flood, quiet = await registered(masterd, "flood"), await registered(masterd, "quiet")
    too_many = {"uuid": flood["uuid"], "spool": "s", "events": events(*range(1, 22))}
    status, answer, _ = await masterd.put("Report", too_many)
    assert status == 413 and answer["error"]["type"] == "RequestTooLarge"
    assert "at most 20 events" in answer["error"]["message"]
    statuses = []
    for start in range(1, 200, 20):  # 40 events/s allowed, bursts of 40: soon refused
        body = {"uuid": flood["uuid"], "spool": "s", "events": events(*range(start, start + 20))}
        status, answer, headers = await masterd.put("Report", body)
        statuses.append(status)
        if status == 503:
            assert answer["error"]["type"] == "Busy" and int(headers["Retry-After"]) >= 1
            break
    assert statuses[-1] == 503
    assert await report(masterd, quiet, 1, 2, 3) == 3  # another node is not held back
    _, text = await masterd.get("/metrics")
    assert metric(text, 'masterd_reports_refused_total{reason="too_many_events"}') == 1
    assert metric(text, 'masterd_reports_refused_total{reason="rate"}') == 1


async def test_a_wait_is_capped_by_max_wait(masterd: Masterd) -> None:
    started = time.monotonic()
    answer = await masterd.ok("WaitForEvents", {"from": None, "timeout": 3600}, timeout_s=30)
    assert answer["events"] == [] and time.monotonic() - started < 15


async def test_a_large_backlog_comes_in_bounded_answers(masterd: Masterd) -> None:
    node = await registered(masterd, "n1")
    big = [{**e, "data": "x" * 1_000_000} for e in events(*range(1, 11))]
    for start in range(0, 10, 2):  # within a request's 16 MiB and the node's rate
        body = {"uuid": node["uuid"], "spool": "s", "events": big[start : start + 2]}
        await masterd.ok("Report", body)
    seen: list[int] = []
    position = 0
    while len(seen) < 10:
        answer = await read(masterd, **{"from": position, "types": ["disk.*"]})
        assert 1 <= len(answer["events"]) <= 5  # 4 MiB of data, and one more
        seen += [e["seq"] for e in answer["events"]]
        position = answer["next"]
    assert seen == list(range(1, 11))
