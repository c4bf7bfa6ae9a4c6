"""A descriptor budget that can never be met is refused at start (exit 2, naming
RLIMIT_NOFILE and --descriptor-reserve): it used to start, say ready, and answer every
request, Identify included, 503 Busy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from masterd.local import LocalNode
from rpc_client.serving.descriptors import (
    CALL_DESCRIPTORS,
    DescriptorsTooFew,
    check_budget_can_be_met,
)
from tests.helpers import node_env, run_noded


def run_limited(
    tmp_path: Path, *args: str, nofile: int | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] if nofile else []
    daemon = ["--state-dir", str(tmp_path / "state"), "--port", "0",
              "--functions", "tests.functions", *args]  # fmt: skip
    return run_noded(*daemon, prefix=prefix, timeout_s=30)


def test_a_reserve_no_limit_holds_is_refused(tmp_path: Path) -> None:
    done = run_limited(tmp_path, "--descriptor-reserve", "100000")
    assert done.returncode == 2, done.stderr
    assert "RLIMIT_NOFILE is" in done.stderr and "--descriptor-reserve 100000" in done.stderr
    assert "daemon.ready" not in done.stderr


def test_a_limit_too_small_for_the_default_reserve_is_refused(tmp_path: Path) -> None:
    done = run_limited(tmp_path, nofile=48)
    assert done.returncode == 2, done.stderr
    assert "RLIMIT_NOFILE is 48" in done.stderr and "--descriptor-reserve 32" in done.stderr
    assert "daemon.ready" not in done.stderr


async def test_a_small_limit_that_holds_one_call_starts_and_serves(tmp_path: Path) -> None:
    prefix = ["prlimit", "--nofile=64:64", "--"]
    args = ["--functions", "tests.functions", "--descriptor-reserve", "4",
            "--spare-processes", "0"]  # fmt: skip
    node = await LocalNode.start(args, env=node_env(), workdir=tmp_path, prefix=prefix)
    try:
        async with node.client() as client:
            assert (await client.identify())["name"]
            state = await client.start_function("echo", {"value": 7}, timeout=10)
            assert state.result == 7
    finally:
        await node.stop()


def test_the_edge_of_the_check() -> None:
    need = 20 + 32 + CALL_DESCRIPTORS + 1
    check_budget_can_be_met(32, 20, limit=need)
    with pytest.raises(DescriptorsTooFew, match=f"at least {need}"):
        check_budget_can_be_met(32, 20, limit=need - 1)


async def test_a_small_soft_limit_is_raised_to_the_hard_one_first(tmp_path: Path) -> None:
    prefix = ["prlimit", "--nofile=48:4096", "--"]
    args = ["--functions", "tests.functions"]
    node = await LocalNode.start(args, env=node_env(), workdir=tmp_path, prefix=prefix)
    try:
        async with node.client() as client:
            assert (await client.identify())["name"]
    finally:
        await node.stop()
