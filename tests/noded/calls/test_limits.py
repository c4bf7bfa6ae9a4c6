"""Per-call resource limits: a function that eats memory, spins or hoards descriptors is
stopped with ResourceLimitExceeded, and the daemon is unharmed."""

from __future__ import annotations

import time

import pytest

from noded.registry import check_limits
from rpc_client.client import NodeClient
from tests.helpers import run_node, run_noded

pytestmark = pytest.mark.both_spawners

LIMITS = ["--limit-cpu-s", "1", "--limit-open-files", "64"]


async def healthy(client: NodeClient) -> bool:
    return (await client.start_function("echo", {"value": "ok"}, timeout=10)).result == "ok"


async def test_2_gib_under_a_256_mib_limit_is_resource_limit_exceeded(
    client: NodeClient,
) -> None:
    state = await client.start_function("allocate", {"megabytes": 2048}, timeout=30)
    assert state.error is not None
    assert (state.error["type"], state.error["limit"]) == ("ResourceLimitExceeded", "memory")
    assert "256 MiB" in state.error["message"]
    assert (await client.start_function("allocate", {"megabytes": 16}, timeout=30)).result
    assert await healthy(client)


async def test_a_busy_loop_under_a_1_s_cpu_limit_is_stopped(spawn_method: str) -> None:
    async with run_node(["--spawn", spawn_method, *LIMITS]) as node, node.client() as client:
        began = time.monotonic()
        state = await client.start_function("spin", {"seconds": 30}, timeout=30)
        assert state.error is not None
        assert (state.error["type"], state.error["limit"]) == ("ResourceLimitExceeded", "cpu")
        assert time.monotonic() - began < 10
        assert await healthy(client)


async def test_too_many_open_files_under_a_limit_is_stopped(spawn_method: str) -> None:
    async with run_node(["--spawn", spawn_method, *LIMITS]) as node, node.client() as client:
        state = await client.start_function("open_many", {"count": 100}, timeout=30)
        assert state.error is not None
        assert state.error["limit"] == "open_files" and state.error["errno"] == 24
        assert (await client.start_function("open_many", {"count": 20}, timeout=30)).result
        assert await healthy(client)


async def test_describe_functions_shows_each_functions_limits(spawn_method: str) -> None:
    async with run_node(["--spawn", spawn_method, *LIMITS]) as node, node.client() as client:
        described = await client.describe_functions()
    defaults = {"cpu_s": 1.0, "open_files": 64, "processes": 1024}
    assert described["allocate"]["limits"] == {**defaults, "memory_mb": 256}
    assert described["echo"]["limits"] == defaults


def test_limits_are_checked_where_they_are_given() -> None:
    with pytest.raises(ValueError, match="unknown limits"):
        check_limits({"memory": 5}, "@function limits")
    with pytest.raises(ValueError, match="must be a number > 0"):
        check_limits({"cpu_s": 0}, "@function limits")
    done = run_noded("--limit-cpu-s", "0")
    assert done.returncode == 2 and "limit must be > 0" in done.stderr
