"""Helpers shared by the tests: a real daemon, raw HTTP, process checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from rpc_client.protocol import CallState

#: ``await make_node(name, host=..., delay_s=..., fail=..., args=...)`` -> LocalNode
NodeFactory = Callable[..., Any]

ROOT = Path(__file__).resolve().parent.parent
#: every daemon the tests start, and so every function process, carries this in its
#: environment; the session's last check looks for processes that still do
LEAK_MARKER = "NODED_TEST_SESSION"
MARKER_VALUE = f"pytest-{os.getpid()}"


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a test daemon: tests importable, and the leak marker."""
    return {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        LEAK_MARKER: MARKER_VALUE,
        **(extra or {}),
    }


def node_args(args: Sequence[str] = ()) -> list[str]:
    return ["--functions", "tests.functions", *args]


def noded_argv(*args: str, module: str = "noded") -> list[str]:
    """``python -m noded ARGS`` (or another daemon's ``module``) from this tree."""
    return [sys.executable, "-m", module, *args]


def run_noded(
    *args: str,
    module: str = "noded",
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout_s: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m noded ARGS`` to its end (a refused start, ``--help``), in the test
    environment plus ``env``, after ``prefix`` (say, prlimit): its status and text output."""
    return subprocess.run(
        [*prefix, *noded_argv(*args, module=module)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        env=node_env(env),
    )


@contextlib.asynccontextmanager
async def run_node(args: Sequence[str] = (), **kwargs: Any) -> AsyncIterator[LocalNode]:
    """A real ganeti-noded with tests.functions loaded, on a free loopback port."""
    env = node_env(kwargs.pop("env", None))
    async with LocalNode.running(node_args(args), env=env, **kwargs) as node:
        yield node


async def put(
    node: LocalNode,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    method: str = "PUT",
    timeout_s: float = 30.0,
) -> tuple[int, Any, dict[str, str]]:
    """One raw HTTP request: (status, decoded JSON body, headers)."""
    data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"http://{node.address}{path}",
            data=data,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response,
    ):
        payload = await response.read()
        decoded = orjson.loads(payload) if payload else None
        return response.status, decoded, dict(response.headers)


async def get_text(node: LocalNode, path: str) -> tuple[int, str, dict[str, str]]:
    """One GET (``/metrics``, ``/openapi.json``): (status, text, headers)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://{node.address}{path}", timeout=aiohttp.ClientTimeout(total=10)
        ) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


def error_of(state: CallState) -> dict[str, Any]:
    """The error of a call that must have failed (fails the test if it did not)."""
    assert state.error is not None, f"{state.fnc_id} did not fail: {state.result!r}"
    return state.error


def metric(text: str, name: str) -> float:
    """The value of one sample line ``name{labels} value`` (0 if absent)."""
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.split()[-1])
    return 0.0


def marked_processes() -> list[psutil.Process]:
    """Processes (other than this one) started under this test session's marker."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(LEAK_MARKER) == MARKER_VALUE:
                found.append(proc)
    return found


async def lasting_zombies(pid: int, settle_s: float = 5.0) -> list[int]:
    """Zombie children of ``pid`` still unreaped after up to ``settle_s``.

    A process that has just written its result is a zombie until the daemon's loop
    handles its pidfd; only zombies that last are a leak.
    """
    end = time.monotonic() + settle_s
    while (zombies := zombie_children(pid)) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    return zombies


def zombie_children(pid: int) -> list[int]:
    with contextlib.suppress(psutil.Error):  # pid itself is gone
        return [
            child.pid for child in psutil.Process(pid).children(recursive=True) if _zombie(child)
        ]
    return []


def _zombie(process: psutil.Process) -> bool:
    # Checked one by one: a child reaped since it was listed must not hide the others.
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def still_alive(pids: list[int], settle_s: float = 5.0) -> list[int]:
    """Those of ``pids`` still running after up to ``settle_s`` (killing takes a moment)."""
    end = time.monotonic() + settle_s
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    return left


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (say, a log line written just after an answer)."""
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def start_ignoring_sigterm(
    client: NodeClient, ready_path: Path, seconds: float = 60
) -> CallState:
    """Start ``ignore_sigterm`` and return once the function ignores SIGTERM."""
    state = await client.start_function(
        "ignore_sigterm", {"seconds": seconds, "ready_path": str(ready_path)}, timeout=0
    )
    await eventually(ready_path.exists)
    return state


async def wait_for_file(path: Path, timeout_s: float = 15.0) -> str:
    await eventually(path.exists, timeout_s)
    return path.read_text()


async def start_with_grandchildren(
    client: NodeClient, tmp_path: Path, *, ignore_term: bool = False
) -> tuple[str, list[int]]:
    pid_file = tmp_path / "kids"
    state = await client.start_function(
        "with_grandchildren",
        {"count": 2, "pid_file": str(pid_file), "ignore_term": ignore_term},
        timeout=0,
    )
    kids = [int(pid) for pid in (await wait_for_file(pid_file)).split()]
    return state.fnc_id, kids


def alive(pid: int) -> bool:
    """True if pid runs and is not a zombie."""
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


def zygotes(daemon_pid: int) -> list[psutil.Process]:
    """The daemon's live fork servers (a killed one may linger a moment as a zombie)."""
    found = []
    for child in psutil.Process(daemon_pid).children():
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            alive = child.status() != psutil.STATUS_ZOMBIE
            if alive and "noded.process.child.fork_server" in command:
                found.append(child)
    return found


def zygote_of(daemon_pid: int) -> psutil.Process:
    found = zygotes(daemon_pid)
    assert len(found) == 1, found
    return found[0]


def classify_raw_answer(answer: bytes) -> str:
    """A raw HTTP answer read to its end: ``200``, ``503 Busy with Retry-After``, another
    status, or how it ended (``connection closed unanswered``)."""
    if not answer:
        return "connection closed unanswered"
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")[1]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if status == "503":
        kind = orjson.loads(payload)["error"]["type"]
        return f"503 {kind}" + (" with Retry-After" if "retry-after" in headers else "")
    return status


@contextlib.contextmanager
def named_test_nodes(
    tmp_path_factory: pytest.TempPathFactory, envs: dict[str, dict[str, str]]
) -> Iterator[dict[str, LocalNode]]:
    """A real ganeti-noded (tests.functions) for each name, with its extra environment
    (``TEST_DELAY_S``, ``TEST_FAIL``...); stopped on leaving (for module fixtures)."""
    started = {}
    try:
        for name, env in envs.items():
            workdir = tmp_path_factory.mktemp(name)
            full_env = node_env({"TEST_NAME": name, **env})
            started[name] = asyncio.run(LocalNode.start(node_args(), env=full_env, workdir=workdir))
        yield started
    finally:
        for daemon in started.values():
            asyncio.run(daemon.stop())
