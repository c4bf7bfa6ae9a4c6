"""A call's ``memory_mb`` and ``processes`` bound its whole process tree, not each process:
children that each stay under the limit are stopped once together they are past it."""

from __future__ import annotations

import pytest

from tests.cgroups import call_cgroups, made_cgroup
from tests.helpers import eventually, run_node

#: checked often, so that a call past a limit is stopped in a moment
FAST = ["--limit-check-interval", "0.1"]


async def test_a_calls_memory_is_bounded_over_all_its_processes(isolation: list[str]) -> None:
    # spread_memory's limit is 200 MiB: 8 children of 160 MiB each held 1,280 MiB and
    # succeeded when only each process's address space was bounded.
    async with run_node([*isolation, *FAST]) as node, node.client() as client:
        args: dict[str, float] = {"children": 8, "megabytes": 160, "seconds": 60}
        state = await client.start_function("spread_memory", args, timeout=60)
        assert state.error is not None, state.result
        assert (state.error["type"], state.error["limit"]) == ("ResourceLimitExceeded", "memory")
        assert "200 MiB" in state.error["message"]
        await eventually(lambda: f"call.limit_exceeded fnc_id={state.fnc_id}" in node.log_text())
        # under the limit together: it runs to its end
        args = {"children": 2, "megabytes": 20, "seconds": 0.5}
        assert (await client.start_function("spread_memory", args, timeout=60)).result == 2


@pytest.mark.parametrize(("children", "stopped"), [(3, False), (4, True)])
async def test_a_calls_processes_are_bounded_at_the_limit(
    isolation: list[str], children: int, stopped: bool
) -> None:
    # 4 processes allowed: the call's own and 3 children is the edge.
    flags = [*isolation, *FAST, "--limit-processes", "4"]
    async with run_node(flags) as node, node.client() as client:
        seconds = 30 if stopped else 1
        state = await client.start_function(
            "fork_many", {"count": children, "seconds": seconds}, timeout=60
        )
        if not stopped:
            assert state.result == children, state.error
            return
        assert state.error is not None, state.result
        assert (state.error["type"], state.error["limit"]) == (
            "ResourceLimitExceeded",
            "processes",
        )
        assert "limit of 4 processes" in state.error["message"]


async def test_describe_functions_shows_the_default_process_limit() -> None:
    async with run_node(["--limit-processes", "64"]) as node, node.client() as client:
        described = await client.describe_functions()
    assert described["echo"]["limits"] == {"processes": 64}


async def test_with_the_controllers_the_calls_cgroup_keeps_its_limits() -> None:
    with made_cgroup() as root:
        if not {"memory", "pids"} <= set((root / "cgroup.controllers").read_text().split()):
            pytest.skip("this cgroup v2 hierarchy has no memory and pids controllers")
        flags = ["--cgroup-root", str(root), "--limit-processes", "16"]
        async with run_node(flags) as node, node.client() as client:
            await eventually(lambda: "controllers=memory,pids" in node.log_text())
            args = {"children": 1, "megabytes": 1, "seconds": 30}
            await client.start_function("spread_memory", args, timeout=0)
            await eventually(lambda: len(call_cgroups(root)) == 1)
            cgroup = call_cgroups(root)[0]
            assert (cgroup / "memory.max").read_text().strip() == str(200 * 1024 * 1024)
            assert (cgroup / "pids.max").read_text().strip() == "16"
