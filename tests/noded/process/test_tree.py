"""Every process of a call dies with it: a grandchild in a session or process group of
its own is killed by abort, abort_after, shutdown and crash recovery, with a cgroup per
call and without one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from masterd.local import LocalNode
from noded.process.tree import CgroupTree, CgroupTrees
from rpc_client.client import NodeClient
from rpc_client.protocol import FncId
from tests.cgroups import UNIFIED, call_cgroups, made_cgroup, remove_cgroups
from tests.helpers import eventually, run_node, still_alive, wait_for_file


@contextlib.asynccontextmanager
async def escaped(
    node: LocalNode,
    client: NodeClient,
    tmp_path: Path,
    fn_name: str = "escape",
    fn_args: Mapping[str, object] | None = None,
    **start: Any,
) -> AsyncIterator[tuple[str, list[int]]]:
    """A call whose two grandchildren escaped its process group; (fnc_id, their pids)."""
    pid_file = tmp_path / f"kids-{uuid.uuid4().hex[:6]}"
    args = {"pid_file": str(pid_file), **(fn_args or {})}
    state = await client.start_function(fn_name, args, **start)
    kids = [int(pid) for pid in (await wait_for_file(pid_file)).split()]
    assert len(kids) == 2 and all(os.getpgid(kid) != FncId.parse(state.fnc_id).cpid
                                  for kid in kids)  # fmt: skip
    try:
        yield state.fnc_id, kids
    finally:
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)


#: grandchildren exec'd in a session or group of their own (``escape``); forked without
#: exec into a session of their own, one ignoring SIGTERM, and double-forked then exec'd
#: with its parent gone at once (``escape_by_fork``)
ESCAPES = {
    "exec": ("escape", {}),
    "fork": ("escape_by_fork", {"ignore_term": True}),
}


@pytest.mark.parametrize("how", ESCAPES)
@pytest.mark.parametrize("reason", ["aborted", "abort_after"])
async def test_abort_and_abort_after_kill_grandchildren_that_escaped(
    isolation: list[str], tmp_path: Path, reason: str, how: str
) -> None:
    start = {"abort_after": 1.0} if reason == "abort_after" else {}
    fn_name, fn_args = ESCAPES[how]
    async with run_node([*isolation, "--kill-grace", "1"]) as node, node.client() as client:
        async with escaped(node, client, tmp_path, fn_name, fn_args, timeout=0, **start) as (
            fnc_id,
            kids,
        ):
            if reason == "aborted":
                state = await client.abort_function(fnc_id)
            else:
                state = await client.wait_for_function(fnc_id, timeout=20)
            assert state.error is not None and state.error["reason"] == reason
            assert await still_alive(kids) == []


@pytest.mark.parametrize("how", ESCAPES)
async def test_shutdown_kills_grandchildren_that_escaped(
    isolation: list[str], tmp_path: Path, how: str
) -> None:
    fn_name, fn_args = ESCAPES[how]
    flags = [*isolation, "--shutdown-grace", "1"]
    async with run_node(flags) as node, node.client() as client:
        async with escaped(node, client, tmp_path, fn_name, fn_args, timeout=0) as (_, kids):
            node.signal(signal.SIGTERM)
            assert await node.wait_exit(30) == 0
            assert await still_alive(kids) == []
    if isolation[1] != "none":  # and its cgroups are gone, each emptied before removal
        assert list(Path(isolation[1]).glob("noded-*")) == []


@pytest.mark.parametrize("how", ESCAPES)
async def test_crash_recovery_kills_grandchildren_that_escaped(
    isolation: list[str], tmp_path: Path, how: str
) -> None:
    fn_name, fn_args = ESCAPES[how]
    async with run_node(isolation, workdir=tmp_path) as first, first.client() as client:
        async with escaped(first, client, tmp_path, fn_name, fn_args, timeout=0) as (_, kids):
            first.signal(signal.SIGKILL)  # a crash: nothing is cleaned up
            await first.wait_exit(10)
            async with run_node(isolation, workdir=tmp_path) as second:
                await eventually(lambda: "daemon.recovered" in second.log_text())
                assert await still_alive(kids) == []


async def test_the_daemon_says_once_how_it_finds_a_calls_processes(
    isolation: list[str],
) -> None:
    async with run_node(isolation) as node:
        mode = "cgroup" if isolation[1] != "none" else "process-tree"
        await eventually(lambda: f"process.isolation mode={mode}" in node.log_text())
        assert node.log_text().count("process.isolation") == 1


def test_a_cgroup_still_in_use_at_release_is_removed_once_empty(tmp_path: Path) -> None:
    root = UNIFIED / f"noded-test-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup v2 directory here: {exc}")
    trees = CgroupTrees(root)
    detached = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        tree = trees.confine(detached.pid, None)
        assert isinstance(tree, CgroupTree)
        tree.release()  # the call finished, a process it left lives on: kept for later
        assert tree.path.exists()
        detached.kill()
        detached.wait(10)
        trees.sweep()
        assert not tree.path.exists()
        trees.close()
        assert not root.exists()
    finally:
        detached.kill()
        remove_cgroups(root)


@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_a_program_a_function_starts_inherits_its_call_mark(spawn: str) -> None:
    # The daemon sends the mark with the call, from the start time it read for the
    # process: it must be what the process would have read itself.
    async with run_node(["--spawn", spawn]) as node, node.client() as client:
        state = await client.start_function("mark_seen", timeout=10)
    assert state.result["inherited"] == state.result["own"]
    assert state.result["own"].startswith(f"{FncId.parse(state.fnc_id).cpid}:")


@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_a_child_forked_without_exec_shows_its_call_mark_in_proc(spawn: str) -> None:
    # What crash recovery reads: os.putenv alone would show nothing before an exec.
    async with run_node(["--spawn", spawn]) as node, node.client() as client:
        state = await client.start_function("mark_in_proc", timeout=10)
    assert state.result["shown"] == [state.result["own"]]
    # os.environ says it too: a program started with env=os.environ (or a copy) has it
    assert state.result["environ"] == state.result["env"] == state.result["own"]


async def test_crash_recovery_leaves_no_call_cgroup_behind(tmp_path: Path) -> None:
    # rmdir right after cgroup.kill finds the cgroup still populated (EBUSY): every
    # crash used to leave its calls' cgroups, and the crashed daemon's own.
    with made_cgroup() as root:
        flags = ["--cgroup-root", str(root)]
        async with run_node(flags, workdir=tmp_path) as first, first.client() as client:
            for n in range(3):
                pid_file = tmp_path / f"kids-{n}"
                await client.start_function("escape", {"pid_file": str(pid_file)}, timeout=0)
                await wait_for_file(pid_file)
            assert len(call_cgroups(root)) == 3
            first.signal(signal.SIGKILL)
            await first.wait_exit(10)
            async with run_node(flags, workdir=tmp_path) as second:
                await eventually(lambda: "daemon.recovered" in second.log_text())
                assert call_cgroups(root) == []
                assert [path.name for path in root.glob("noded-*")] == [f"noded-{second.pid}"]


async def test_at_start_empty_call_cgroups_of_daemons_gone_are_removed() -> None:
    with made_cgroup() as root:
        gone = root / "noded-999999999"  # above any pid_max: no such daemon runs
        (gone / "call-1").mkdir(parents=True)
        (gone / "call-2").mkdir()
        async with run_node(["--cgroup-root", str(root)]) as node:
            await eventually(lambda: "cgroup.leftovers_removed" in node.log_text())
            assert not gone.exists()


@pytest.mark.slow
async def test_a_shutdown_with_200_calls_walks_their_trees_in_time() -> None:
    # Each call's tree was walked through /proc on its own, three times: a shutdown of
    # 200 calls took 65 s here, past any stop timeout.
    flags = ["--cgroup-root", "none", "--max-functions", "1000", "--shutdown-grace", "1"]
    async with run_node(flags) as node, node.client() as client:
        started = await asyncio.gather(
            *(client.start_function("sleep", {"seconds": 120}, timeout=0) for _ in range(200))
        )
        node.signal(signal.SIGTERM)
        assert await node.wait_exit(20) == 0
    assert await still_alive([FncId.parse(state.fnc_id).cpid for state in started]) == []
