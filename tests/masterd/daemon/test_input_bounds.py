"""Integers bounded to what the stores hold, and the job fields' types, on a real
ganeti-masterd (attack16 defects 7 and 10): out of range or mistyped is 400 BadRequest,
never the store's 503 (which a client retries for ever) or 500; at the bound it is taken."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from masterd.local import free_port
from tests.masterd.daemon.backends import BACKENDS
from tests.masterd.daemon.running import Masterd, events, registration, start_masterd
from tests.masterd.jobs.fleet import follow

#: the bounds doc/masterd.md states: PostgreSQL's INTEGER and BIGINT
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1
NODE = registration("n1", labels=["web"], port=free_port(), functions=["node_behaviour"])
JOB = {"fn_name": "node_behaviour", "nodes": [], "timeout": 1}


@pytest.fixture(scope="module", params=BACKENDS)
def masterd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Masterd]:
    """One daemon per backend for the module, with n1 registered (web) and n2 (db)."""
    workdir = tmp_path_factory.mktemp("masterd")
    args: list[str] = []
    if request.param == "postgres":  # a database of its own on the worker's server
        args = ["--store", request.getfixturevalue("postgres_server").create_database()]
    daemon = asyncio.run(start_masterd(args, workdir))
    asyncio.run(daemon.ok("Register", NODE))
    other = registration("n2", labels=["db"], port=free_port(), functions=["node_behaviour"])
    asyncio.run(daemon.ok("Register", other))
    yield daemon
    asyncio.run(daemon.stop())


OUT_OF_RANGE: list[tuple[str, dict[str, Any]]] = [
    ("SubmitJob", {**JOB, "window": INT32_MAX + 1}),
    ("SubmitJob", {**JOB, "window": 2**40}),
    ("SubmitJob", {**JOB, "max_failures": 2**40}),
    ("SubmitJob", {**JOB, "canary": INT32_MAX + 1}),
    ("WaitForJob", {"job_id": "j", "timeout": 0, "results_from": INT32_MAX + 1}),
    ("ListJobs", {"limit": INT32_MAX + 1}),
    ("Report", {"uuid": NODE["uuid"], "spool": "s", "events": events(INT64_MAX + 1)}),
    ("WaitForEvents", {"from": INT64_MAX + 1, "timeout": 0}),
    ("Register", {**NODE, "pid": INT32_MAX + 1}),
    ("Heartbeat", {"uuid": NODE["uuid"], "instance": NODE["instance"], "running": 2**40}),
]
MISTYPED: list[tuple[str, dict[str, Any]]] = [
    ("SubmitJob", {**JOB, "fn_args": []}),
    ("SubmitJob", {**JOB, "fn_args": 0}),
    ("SubmitJob", {**JOB, "fn_args": False}),
    ("SubmitJob", {**JOB, "fn_args": ""}),
    ("SubmitJob", {**JOB, "max_failures": 1.0}),
    ("SubmitJob", {**JOB, "window": 1.0}),
    ("SubmitJob", {**JOB, "canary": 0.0}),
    ("ListJobs", {"limit": 1.0}),
    ("WaitForJob", {"job_id": "j", "timeout": 0, "results_from": 0.0}),
]


@pytest.mark.parametrize(("procedure", "body"), OUT_OF_RANGE + MISTYPED)
async def test_an_integer_out_of_range_or_mistyped_is_a_bad_request(
    masterd: Masterd, procedure: str, body: dict[str, Any]
) -> None:
    status, answer, _ = await masterd.put(procedure, body)
    assert status == 400, answer
    assert answer["error"]["type"] == "BadRequest" and answer["error"]["message"]


async def test_integers_at_the_bound_are_taken_and_the_next_write_goes_on(
    masterd: Masterd,
) -> None:
    state = await masterd.ok("SubmitJob", {**JOB, "window": INT32_MAX, "canary": 0,
                                           "max_failures": INT32_MAX})  # fmt: skip
    await masterd.ok("WaitForJob", {"job_id": state["job_id"], "timeout": 0,
                                    "results_from": INT32_MAX})  # fmt: skip
    await masterd.ok("ListJobs", {"limit": INT32_MAX})
    await masterd.ok("WaitForEvents", {"from": INT64_MAX, "timeout": 0})
    spool = {"uuid": NODE["uuid"], "spool": "bounds"}
    acked = (await masterd.ok("Report", {**spool, "events": events(INT64_MAX)}))["acked"]
    assert acked == INT64_MAX
    status, _, _ = await masterd.put("Report", {**spool, "events": events(INT64_MAX + 1)})
    assert status == 400
    after = {**spool, "spool": "after", "events": events(0)}
    assert (await masterd.ok("Report", after))["acked"] == 0


async def test_nodes_and_labels_together_select_the_named_nodes_carrying_the_labels(
    masterd: Masterd,
) -> None:
    state = await masterd.ok("SubmitJob", {**JOB, "nodes": ["n2", "n1"], "labels": ["web"]})
    final, items = await follow(masterd, state["job_id"])
    assert [item["node"] for item in items] == ["n1"]
    assert sum(final["counts"].values()) == 1
