"""The fork server: spares are not calls, a dead zygote is replaced without losing calls,
everything dies with the daemon, and a zygote that cannot start falls back to exec."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from noded.process.child import fork_server as protocol
from noded.process.child.fork_server import BIND_NOW_ADDED
from rpc_client.errors import NodeBusy
from rpc_client.protocol import FncId
from tests.helpers import (
    eventually,
    lasting_zombies,
    node_env,
    run_node,
    still_alive,
    zygote_of,
    zygotes,
)


async def test_spare_children_are_forked_ahead_and_are_not_calls() -> None:
    async with run_node(["--spare-processes", "3"]) as node, node.client() as client:
        zygote = zygote_of(node.pid)
        await eventually(lambda: len(zygote.children()) == 3)
        assert await client.list_functions() == []
        state = await client.start_function("whoami", timeout=10)
        assert state.result["ppid"] == zygote.pid  # the call took a spare
        await eventually(lambda: len(zygote.children()) == 3)  # and the pool was refilled
        listed = await client.list_functions()
        assert [entry["fnc_id"] for entry in listed] == [state.fnc_id]


async def test_a_spare_that_dies_in_the_pool_is_replaced_and_no_call_fails() -> None:
    async with run_node(["--spare-processes", "2"]) as node, node.client() as client:
        zygote = zygote_of(node.pid)
        await eventually(lambda: len(zygote.children()) == 2)
        killed = zygote.children()
        for spare in killed:
            spare.kill()  # say, the OOM killer
        await eventually(lambda: all(gone(spare) for spare in killed))  # dead, maybe unreaped
        states = [await client.start_function("echo", {"value": n}, timeout=10) for n in range(4)]
        assert [state.result for state in states] == [0, 1, 2, 3]
        await eventually(lambda: len(zygote.children()) == 2)  # reaped and refilled
        assert "spare.gone" in node.log_text(), node.log_text()
        assert await lasting_zombies(zygote.pid) == []


async def test_the_zygote_stays_small_it_loads_no_event_loop_http_or_tls() -> None:
    # Every fork copies the zygote's page tables and every exit tears them down: what it
    # does not load costs no call anything.
    async with run_node() as node:
        zygote = zygote_of(node.pid)
        maps = Path(f"/proc/{zygote.pid}/maps").read_text()
        for heavy in ("aiohttp", "uvloop", "_asyncio", "_ssl", "_hashlib", "psutil"):
            assert heavy not in maps, heavy


def test_the_zygote_and_the_function_api_do_not_import_threading() -> None:
    # A forked child of a process that imported threading runs its after-fork hook,
    # which copied 0.3-0.4 MiB of pages into every function process (measured: a
    # process's USS 0.71 -> 1.08 MiB when progress() imported it).
    probe = (
        "import sys, noded, noded.process.child.fork_server as z; "
        "from noded.registry import load_modules; load_modules([]); "
        "print(sorted(m for m in ('threading', 'asyncio', 'logging') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
async def test_calls_go_on_once_the_daemon_holds_over_1024_descriptors() -> None:
    # every running call holds three descriptors: 400 of them take the numbers past
    # select()'s limit of 1023
    async with run_node(["--max-functions", "1000"]) as node, node.client() as client:
        started = await asyncio.gather(
            *(client.start_function("sleep", {"seconds": 2}, timeout=0) for _ in range(400))
        )
        assert len(os.listdir(f"/proc/{node.pid}/fd")) > 1024
        done = await asyncio.gather(
            *(client.wait_for_function(state.fnc_id, timeout=30) for state in started)
        )
        assert [state.result for state in done] == [2] * 400
        assert "internal_error" not in node.log_text()


async def test_function_module_state_is_fresh_per_call() -> None:
    async with run_node() as node, node.client() as client:
        first = await client.start_function("count_in_module", timeout=10)
        second = await client.start_function("count_in_module", timeout=10)
    assert first.result == second.result == 1


async def test_a_dead_zygote_is_replaced_and_running_calls_go_on() -> None:
    async with run_node() as node, node.client() as client:
        running = await client.start_function(
            "sleep_then", {"seconds": 1.5, "value": "kept"}, timeout=0
        )
        old = zygote_of(node.pid)
        os.kill(old.pid, signal.SIGKILL)
        await eventually(lambda: zygote_of_or_none(node.pid) not in (None, old.pid))
        done = await client.wait_for_function(running.fnc_id, timeout=15)
        assert done.result == "kept"  # its pipes were the daemon's
        assert (await client.start_function("add", {"a": 1, "b": 2}, timeout=10)).result == 3
        _, text = await metrics_text(node)
        assert "noded_zygote_restarts_total 1.0" in text
        assert "forkserver.died" in node.log_text()


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def zygote_of_or_none(daemon_pid: int) -> int | None:
    try:
        return zygote_of(daemon_pid).pid
    except AssertionError:
        return None


async def metrics_text(node) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://{node.address}/metrics", timeout=aiohttp.ClientTimeout(total=10)
        ) as response,
    ):
        return response.status, await response.text()


async def test_the_zygote_and_spares_die_with_the_daemon() -> None:
    async with run_node(["--spare-processes", "2"]) as node:
        zygote = zygote_of(node.pid)
        await eventually(lambda: len(zygote.children()) == 2)
        spares = [child.pid for child in zygote.children()]
        node.signal(signal.SIGKILL)  # no clean-up at all
        await node.wait_exit(10)
    assert await still_alive([zygote.pid, *spares]) == []


@pytest.mark.parametrize("operators", [None, "1"])
async def test_functions_inherit_ld_bind_now_only_from_the_operator(operators: str | None) -> None:
    # The zygote is started with LD_BIND_NOW=1 (fewer page faults a child), and must not
    # pass it on to what functions run, unless the daemon had it already.
    env = {} if operators is None else {"LD_BIND_NOW": operators}
    async with run_node(env=env) as node, node.client() as client:
        zygote = zygote_of(node.pid)
        assert "LD_BIND_NOW" in zygote.environ()  # it was there when the loader ran
        for name, expected in (("LD_BIND_NOW", operators), (BIND_NOW_ADDED, None)):
            state = await client.start_function("environment_variable", {"name": name}, timeout=10)
            assert (state.finished, state.result) == (True, expected), name


async def test_a_stopped_daemon_leaves_no_orphan_to_init() -> None:
    # Run under a child subreaper, so that anything abandoned comes to it and is counted,
    # rather than to an init that may reap it late or never (a container's).
    catcher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.orphan_catcher", "--spare-processes", "3",
        stdout=subprocess.PIPE, env={**os.environ, **node_env()},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(catcher.communicate(), 60)
    report = json.loads(output)
    assert report["status"] == 0
    assert report["spares"], report  # there were spares to release
    assert report["orphans"] == [], report  # the fork server reaped them before it left


async def test_a_running_function_outlives_a_crash_and_the_next_start_kills_it(
    tmp_path: Path,
) -> None:
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        running = await client.start_function("sleep", {"seconds": 60}, timeout=0)
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
    orphan = FncId.parse(running.fnc_id).cpid
    assert psutil.pid_exists(orphan)  # no parent-death signal: see doc/operations.md
    async with run_node(workdir=tmp_path):
        assert await still_alive([orphan]) == []


async def test_spawn_exec_runs_an_interpreter_per_call() -> None:
    async with run_node(["--spawn", "exec"]) as node, node.client() as client:
        state = await client.start_function("whoami", timeout=10)
        assert state.result["ppid"] == node.pid
        assert zygotes(node.pid) == []


async def test_a_zygote_that_cannot_start_falls_back_to_exec() -> None:
    # a module that imports in the daemon but fails in the fork server
    env = {"NODED_TEST_BREAK_ZYGOTE": "1"}
    async with run_node(["--functions", "tests.fork_server_breaker"], env=env) as node:
        async with node.client() as client:
            assert (await client.start_function("echo", {"value": 1}, timeout=10)).result == 1
        assert "spawn.fallback" in node.log_text()
        assert zygotes(node.pid) == []


async def test_a_fork_the_zygote_cannot_make_is_busy_and_the_zygote_stays() -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    async with run_node(["--spare-processes", "0"]) as node, node.client() as client:
        zygote = zygote_of(node.pid)
        limit = ["prlimit", f"--pid={zygote.pid}"]
        subprocess.run([*limit, "--nofile=6:"], check=True, timeout=10)  # soft: no room for pipes
        with pytest.raises(NodeBusy, match="could not fork"):
            await client.start_function("echo", {"value": 1}, timeout=5)
        subprocess.run([*limit, "--nofile=1024:"], check=True, timeout=10)
        assert (await client.start_function("echo", {"value": 2}, timeout=10)).result == 2
        assert zygote_of(node.pid).pid == zygote.pid  # no restart was needed


async def test_one_datagram_carries_many_forks_and_reaps_and_one_answers_the_reaps() -> None:
    # The daemon sends what it asked within a few ms as one datagram, so that the zygote
    # wakes once for it; the statuses of a datagram's reaps come back as one.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.settimeout(30)
    argv = ["-P", "-m", "noded.process.child.fork_server", str(theirs.fileno()), "tests.functions"]
    zygote = subprocess.Popen(
        [sys.executable, *argv],
        pass_fds=[theirs.fileno()],
        env={**os.environ, **node_env()},
    )
    theirs.close()
    try:
        assert ours.recv(64) == protocol.READY
        ours.send(protocol.FORK * 2)
        children = [_child_of(ours), _child_of(ours)]
        for _, ends in children:  # stdin closed: a spare without a call leaves
            for fd in ends:
                os.close(fd)
        for pid, _ in children:
            await eventually(functools.partial(_exited, pid))
        ours.send(b"".join(protocol.PID.pack(protocol.REAP, pid) for pid, _ in children))
        answer = ours.recv(4096)
        statuses = {pid: status for _, pid, status in protocol.PID_STATUS.iter_unpack(answer)}
        assert statuses == {pid: 0 for pid, _ in children}
    finally:
        ours.close()  # the zygote reads EOF and leaves
        assert zygote.wait(30) == 0


def _child_of(control: socket.socket) -> tuple[int, list[int]]:
    message, fds, _, _ = socket.recv_fds(control, 64, 4)
    kind, pid = protocol.PID.unpack(message)
    assert kind == protocol.CHILD and len(fds) == 4
    return pid, fds


def _exited(pid: int) -> bool:
    """``pid`` (another process's child) is a zombie or gone."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_process_that_stays_after_its_result_is_killed_after_the_grace() -> None:
    async with run_node(["--kill-grace", "0.5"]) as node, node.client() as client:
        state = await client.start_function("answer_and_linger", {"value": 7}, timeout=10)
        assert state.finished and state.result == 7
        pid = FncId.parse(state.fnc_id).cpid
        assert await still_alive([pid], settle_s=10.0) == []
        assert "did not exit after writing its result" in node.log_text()
