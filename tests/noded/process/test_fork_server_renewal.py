"""A fork server replaced with calls running (killed, or by a reload: SIGHUP,
ReloadFunctions) inherits none of their descriptors, serves again at once, answers every
caller, and leaves nothing of the old one running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from typing import Any

import psutil
import pytest

from noded.process.child import fork_server as protocol
from noded.process.child.frames import encode_request
from noded.process.fork_spawner import ForkSpawner
from noded.process.function import ProcessLimits
from tests.helpers import alive, eventually, marked_processes, put, run_node, zygote_of, zygotes
from tests.noded.listeners import KeepingListener

SPARES = 4
RUNNING = 6


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def spares_of(zygote: psutil.Process) -> list[int]:
    found = []
    for child in zygote.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def new_zygote(daemon_pid: int, old: int) -> psutil.Process | None:
    """The daemon's fork server that is not ``old`` (once it is up)."""
    others = [z for z in zygotes(daemon_pid) if z.pid != old]
    return others[0] if others else None


async def start_sleepers(node: Any, count: int) -> list[str]:
    """``count`` calls running for a while: the daemon holds their pipes."""
    fnc_ids = []
    for _ in range(count):
        body = {"fn_name": "sleep_then", "fn_args": {"seconds": 30}, "timeout": 0}
        status, answer, _ = await put(node, "/StartFunction", body)
        assert status == 200, answer
        fnc_ids.append(answer["fnc_id"])
    return fnc_ids


async def abort_all(node: Any, fnc_ids: list[str]) -> None:
    for fnc_id in fnc_ids:
        await put(node, "/AbortFunction", {"fnc_id": fnc_id})


@pytest.mark.parametrize("how", ["killed", "reloaded"])
async def test_a_new_fork_server_holds_no_descriptor_of_a_running_call(how: str) -> None:
    async with run_node(["--spare-processes", str(SPARES)]) as node:
        old = zygote_of(node.pid)
        await eventually(lambda: len(spares_of(old)) == SPARES)
        baseline = descriptors(old.pid)  # its own: stdio, the control socket
        running = await start_sleepers(node, RUNNING)
        if how == "killed":
            old.kill()
        else:
            status, answer, _ = await put(node, "/ReloadFunctions", {})
            assert status == 200 and answer["reloaded"], answer
        await eventually(lambda: new_zygote(node.pid, old.pid) is not None)
        new = new_zygote(node.pid, old.pid)
        assert new is not None
        await eventually(lambda: len(spares_of(new)) == SPARES)
        # 4 descriptors a call (its pipes) and 4 a spare, were they inherited
        with contextlib.suppress(AssertionError):
            await eventually(lambda: descriptors(new.pid) <= baseline, timeout_s=5)
        assert descriptors(new.pid) <= baseline, (baseline, os.listdir(f"/proc/{new.pid}/fd"))

        # a spare just forked holds its parent's descriptors until it has closed them
        def spares_hold_their_own() -> bool:
            return all(descriptors(spare) <= 4 + 1 for spare in spares_of(new))

        with contextlib.suppress(AssertionError):
            await eventually(spares_hold_their_own, timeout_s=5)
        for spare in spares_of(new):
            assert descriptors(spare) <= 4 + 1, os.listdir(f"/proc/{spare}/fd")
        await abort_all(node, running)


async def test_a_killed_fork_server_serves_again_at_once_with_calls_running() -> None:
    async with run_node(["--spare-processes", str(SPARES)]) as node, node.client() as client:
        old = zygote_of(node.pid)
        await eventually(lambda: len(spares_of(old)) == SPARES)
        running = await start_sleepers(node, RUNNING)
        await eventually(lambda: len(spares_of(old)) >= RUNNING + 1)
        old.kill()
        killed = time.monotonic()
        # more calls than the pool held: some wait for the new fork server's forks
        states = await asyncio.gather(
            *(client.start_function("echo", {"value": n}, timeout=20) for n in range(8))
        )
        served_s = time.monotonic() - killed
        assert [state.result for state in states] == list(range(8))
        assert served_s < 2.0, f"the new fork server served after {served_s:.3f} s"
        # no fork server was declared hung: none was
        await asyncio.sleep(0)  # (the log is written by the daemon, which is idle now)
        assert "forkserver.hung" not in node.log_text()
        await abort_all(node, running)


async def reload_by(node: Any, how: str, reloads_before: int) -> None:
    if how == "sighup":
        node.signal(signal.SIGHUP)
        await eventually(
            lambda: node.log_text().count("functions.reloaded") > reloads_before, timeout_s=30
        )
    else:
        status, answer, _ = await put(node, "/ReloadFunctions", {})
        assert status == 200 and answer["reloaded"], answer


@pytest.mark.slow
@pytest.mark.parametrize("spares", [0, SPARES])
async def test_reloads_under_load_answer_every_caller(spares: int) -> None:
    async with run_node(["--spare-processes", str(spares)]) as node:
        answers: Counter[tuple[int, str]] = Counter()
        slowest = [0.0]
        stop = asyncio.Event()

        async def caller(n: int) -> None:
            body = {"fn_name": "echo", "fn_args": {"value": n}, "timeout": 20}
            while not stop.is_set():
                began = time.monotonic()
                status, answer, _ = await put(node, "/StartFunction", body)
                slowest[0] = max(slowest[0], time.monotonic() - began)
                kind = answer["error"]["type"] if status != 200 else str(answer["error"])
                answers[(status, kind)] += 1

        callers = [asyncio.create_task(caller(n)) for n in range(20)]
        for n, how in enumerate(["request", "sighup", "request", "sighup"]):
            await asyncio.sleep(0.3)
            await reload_by(node, how, n)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*callers), 60)
        assert set(answers) <= {(200, "None"), (503, "Busy")}, answers
        assert answers[(200, "None")] >= 20, answers
        assert slowest[0] < 2.5, f"a call waited {slowest[0]:.3f} s"  # not the 3 s stall
        assert "forkserver.hung" not in node.log_text()


@pytest.mark.slow
async def test_a_reload_leaves_nothing_of_the_old_fork_server_running() -> None:
    async with run_node(["--spare-processes", str(SPARES)]) as node:
        for _ in range(2):
            old = zygote_of(node.pid)
            await eventually(lambda old=old: len(spares_of(old)) == SPARES)  # type: ignore[misc]
            spares = spares_of(old)
            status, answer, _ = await put(node, "/ReloadFunctions", {})
            assert status == 200 and answer["reloaded"], answer
            with contextlib.suppress(AssertionError):
                await eventually(lambda old=old: not alive(old.pid))  # type: ignore[misc]
            assert not alive(old.pid), "the old fork server is still running"
            with contextlib.suppress(AssertionError):
                await eventually(lambda s=spares: not any(alive(p) for p in s))  # type: ignore[misc]
            assert [pid for pid in spares if alive(pid)] == [], "old spares still running"
            orphans = [p.pid for p in marked_processes() if _ppid(p) == 1]
            assert orphans == [], orphans


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


async def test_a_reload_while_a_fork_is_asked_answers_that_call() -> None:
    """With no spares every call waits for its fork: the fork server a reload replaces
    meanwhile stays until it has answered (it was closed, and the call got a 500)."""
    async with run_node(["--spare-processes", "0"]) as node:
        old = zygote_of(node.pid)
        os.kill(old.pid, signal.SIGSTOP)  # the fork it is asked for waits
        try:
            body = {"fn_name": "echo", "fn_args": {"value": "kept"}, "timeout": 20}
            call = asyncio.create_task(put(node, "/StartFunction", body))
            await asyncio.sleep(0.3)  # (the request reaches the daemon, which asks a fork)
            status, answer, _ = await put(node, "/ReloadFunctions", {})
            assert status == 200 and answer["reloaded"], answer
        finally:
            os.kill(old.pid, signal.SIGCONT)
        status, answer, _ = await asyncio.wait_for(call, 30)
        assert (status, answer.get("result")) == (200, "kept"), answer
        await eventually(lambda: not alive(old.pid))  # and then it leaves


async def test_a_dead_fork_servers_call_is_asked_of_no_later_fork_server() -> None:
    """A call of a killed fork server ends once a new one serves: init reaped it, and the
    new fork server is not asked for its status (the pid may name a child of its own by
    then, for which it would wait, answering no fork meanwhile)."""
    spawner = ForkSpawner(["tests.functions"], ProcessLimits(), spares=0)
    await spawner.start()
    asked: list[int] = []
    send = spawner._outbox.put

    def recording(message: bytes, *, now: bool = False) -> None:
        if message[:1] == protocol.REAP:
            asked.append(protocol.PID.unpack(message)[1])
        send(message, now=now)

    spawner._outbox.put = recording  # type: ignore[method-assign]

    try:
        old = zygote_of(os.getpid())
        running = await spawner.take()
        running.start(encode_request("sleep_then", {"seconds": 2.0, "value": 1}), KeepingListener())
        old.kill()
        await eventually(lambda: new_zygote(os.getpid(), old.pid) is not None)
        await asyncio.wait_for(running.reaped, 15)
        assert running.pid not in asked
        after = await spawner.take()
        after.start(encode_request("echo", {"value": 2}), KeepingListener())
        await asyncio.wait_for(after.reaped, 15)
        assert after.outcome.exit_code == 0 and after.pid in asked  # its own is asked
    finally:
        await spawner.close()


async def test_a_retired_fork_server_keeps_no_spares_while_its_calls_run() -> None:
    async with run_node(["--spare-processes", str(SPARES)]) as node:
        old = zygote_of(node.pid)
        running = await start_sleepers(node, 1)
        await eventually(lambda: len(spares_of(old)) >= 2)  # the call, and spares
        status, answer, _ = await put(node, "/ReloadFunctions", {})
        assert status == 200 and answer["reloaded"], answer
        call_pid = int(running[0].split(":")[1])
        with contextlib.suppress(AssertionError):
            await eventually(lambda: spares_of(old) == [call_pid], timeout_s=5)
        assert spares_of(old) == [call_pid], "the old fork server still has spares"
        assert alive(old.pid)  # its call runs on
        await abort_all(node, running)
        await eventually(lambda: not alive(old.pid))


def inheritable_descriptors(pid: int) -> list[str]:
    """The descriptors of ``pid`` above stdio without O_CLOEXEC, with what they are."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = int(info.read().split("flags:")[1].split()[0], 8)
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except (OSError, IndexError):
            continue  # closed meanwhile
        if int(fd) > 2 and not flags & os.O_CLOEXEC:
            found.append(f"{fd} -> {target}")
    return found


@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_every_descriptor_the_daemon_holds_for_calls_is_close_on_exec(spawn: str) -> None:
    async with run_node(["--spawn", spawn, "--spare-processes", str(SPARES)]) as node:
        running = await start_sleepers(node, RUNNING)
        assert inheritable_descriptors(node.pid) == []
        await abort_all(node, running)
