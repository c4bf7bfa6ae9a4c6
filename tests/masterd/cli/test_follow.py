"""rpc-cli showing a call's output: call --follow, wait --follow, output, gather --follow."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import orjson

from masterd.cli.output_printer import PROGRESS_LINE_EVERY_S
from masterd.local import LocalNode
from tests.helpers import NodeFactory

LINES = "".join(f"line {n}\n" for n in range(4))


async def rpc_cli_live(
    node: LocalNode | None, *args: str
) -> tuple[int, list[tuple[float, str]], str]:
    """Run rpc-cli; its stdout lines with the time each arrived, and its stderr."""
    address = ["--node", node.address] if node is not None else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", *address, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[tuple[float, str]] = []
    began = time.monotonic()
    while line := await asyncio.wait_for(proc.stdout.readline(), 60):
        lines.append((time.monotonic() - began, line.decode()))
    err = await asyncio.wait_for(proc.stderr.read(), 60)
    return await asyncio.wait_for(proc.wait(), 60), lines, err.decode()


def state_of(lines: list[tuple[float, str]]) -> dict[str, object]:
    """The JSON call state printed after the output."""
    text = "".join(line for _, line in lines)
    return orjson.loads(text[text.index("{\n") :])


async def test_call_follow_prints_lines_as_they_come(shared_node: LocalNode) -> None:
    status, lines, err = await rpc_cli_live(
        shared_node, "call", "print_lines", '{"count": 4, "delay_s": 0.4}', "--follow"
    )
    assert status == 0
    assert "".join(line for _, line in lines[:4]) == LINES
    assert lines[3][0] - lines[0][0] > 0.8  # printed as they came, not all at the end
    state = state_of(lines)
    assert state["result"] == 4 and "output" not in state
    assert "running" not in err  # the output replaces the polling notes


async def test_call_follow_sends_stderr_and_progress_to_stderr(shared_node: LocalNode) -> None:
    status, lines, err = await rpc_cli_live(
        shared_node, "call", "report_progress", '{"count": 3}', "--follow"
    )
    assert status == 0 and state_of(lines)["result"] == 3
    assert "progress 100% 3 of 3" in err  # stderr is not a terminal: one line a report


async def test_call_follow_keeps_the_exit_status_of_a_failure(shared_node: LocalNode) -> None:
    status, lines, err = await rpc_cli_live(
        shared_node, "call", "print_then_fail", '{"text": "before"}', "--follow"
    )
    assert status == 1
    assert lines[0][1] == "before\n"
    assert "before\n" in err and "RuntimeError" in err


async def test_wait_follow_and_output_attach_to_a_call(shared_node: LocalNode) -> None:
    async with shared_node.client() as client:
        state = await client.start_function("print_lines", {"count": 4, "delay_s": 0.2}, timeout=0)
    status, lines, _ = await rpc_cli_live(shared_node, "wait", state.fnc_id, "--follow")
    assert status == 0 and "".join(line for _, line in lines[:4]) == LINES
    assert state_of(lines)["result"] == 4
    status, lines, _ = await rpc_cli_live(shared_node, "output", state.fnc_id)
    assert status == 0 and "".join(line for _, line in lines) == LINES
    after_first = str(5 + len("line 0\n"))
    status, lines, _ = await rpc_cli_live(
        shared_node, "output", state.fnc_id, "--from", after_first
    )
    assert "".join(line for _, line in lines) == LINES[len("line 0\n") :]


async def test_gather_follow_prefixes_each_line_with_its_node(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    one, two = await make_node("one"), await make_node("two")
    nodes = tmp_path / "nodes.toml"
    nodes.write_text(
        "".join(
            f'[[node]]\nname = "{name}"\naddress = "{n.host}"\nport = {n.port}\n'
            for name, n in (("one", one), ("two", two))
        )
    )
    status, lines, _ = await rpc_cli_live(
        None, "--nodes", str(nodes), "gather", "print_lines", '{"count": 4}', "--follow"
    )
    assert status == 0
    for name in ("one", "two"):
        mine = [line for _, line in lines if line.startswith(f"{name}: ")]
        assert "".join(line.removeprefix(f"{name}: ") for line in mine) == LINES


def _nodes_file(tmp_path: Path, nodes: dict[str, LocalNode]) -> Path:
    path = tmp_path / "nodes.toml"
    path.write_text("".join(f'[[node]]\nname = "{name}"\naddress = "{n.host}"\nport = {n.port}\n'
                            for name, n in nodes.items()))  # fmt: skip
    return path


def _gather_progress(nodes: Path, *more: str, terminal: bool) -> tuple[float, list[str]]:
    """gather --follow of paced_progress (20 reports, one every 0.1 s) with its stderr on
    a terminal or a pipe; how long it ran, and its stderr lines."""
    args = ["--nodes", str(nodes), "gather", "paced_progress", '{"count": 20, "every_s": 0.1}',
            "--follow", *more]  # fmt: skip
    began = time.monotonic()
    if not terminal:
        done = subprocess.run([sys.executable, "-m", "masterd.cli", *args], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return time.monotonic() - began, done.stderr.splitlines()
    main_end, terminal_end = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "masterd.cli", *args],
                          stdout=subprocess.DEVNULL, stderr=terminal_end) as proc:  # fmt: skip
        os.close(terminal_end)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
            while chunk := os.read(main_end, 65536):
                shown += chunk
        os.close(main_end)
        assert proc.wait(60) == 0, shown
    return time.monotonic() - began, shown.decode().replace("\r", "").splitlines()


async def test_gather_follow_on_a_terminal_coalesces_progress(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """At most one progress line every 0.5 s a node (it was one per report, 10 a
    second), and each node's last report still shown."""
    nodes = _nodes_file(tmp_path, {"one": await make_node("one"), "two": await make_node("two")})
    ran_s, lines = await asyncio.to_thread(_gather_progress, nodes, terminal=True)
    for name in ("one", "two"):
        mine = [line for line in lines if line.startswith(f"{name}: progress")]
        assert mine[-1] == f"{name}: progress 100% 20 of 20"
        assert len(mine) <= ran_s / PROGRESS_LINE_EVERY_S + 2, (ran_s, mine)


async def test_gather_follow_to_a_pipe_keeps_every_progress_line(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    nodes = _nodes_file(tmp_path, {"one": await make_node("one"), "two": await make_node("two")})
    _, lines = await asyncio.to_thread(_gather_progress, nodes, terminal=False)
    for name in ("one", "two"):
        mine = [line for line in lines if line.startswith(f"{name}: progress")]
        assert mine[-1] == f"{name}: progress 100% 20 of 20"
        assert len(mine) >= 10  # every report the node kept (it keeps one per 50 ms)


async def test_gather_follow_progress_every_sets_the_rate_either_way(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """The edges: 0 on a terminal is every report; 1 s to a pipe coalesces."""
    nodes = _nodes_file(tmp_path, {"one": await make_node("one")})
    _, lines = await asyncio.to_thread(_gather_progress, nodes, "--progress-every", "0",
                                       terminal=True)  # fmt: skip
    mine = [line for line in lines if line.startswith("one: progress")]
    assert len(mine) >= 10 and mine[-1] == "one: progress 100% 20 of 20"
    ran_s, lines = await asyncio.to_thread(_gather_progress, nodes, "--progress-every", "1",
                                           terminal=False)  # fmt: skip
    mine = [line for line in lines if line.startswith("one: progress")]
    assert len(mine) <= ran_s / 1 + 2 and mine[-1] == "one: progress 100% 20 of 20"
