"""README.md's commands and program run as written, against real daemons (on a free port
and in a temporary directory instead of 1811 and /tmp)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from masterd.local import free_port
from tests.helpers import ROOT, node_env, run_node

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def localised(block: str, tmp_path: Path, port: int, master_port: int = 0) -> str:
    """The block with its daemons on ``port`` (ganeti-masterd on ``master_port``) and its
    files under ``tmp_path``."""
    block = block.replace("/tmp/", f"{tmp_path}/").replace("1811", str(port))
    block = block.replace("1812", str(master_port))
    block = block.replace("ganeti-masterd --state-dir",
                          f"ganeti-masterd --port {master_port} --state-dir")  # fmt: skip
    return block.replace("ganeti-noded --state-dir", f"ganeti-noded --port {port} --state-dir")


def run_shell(
    block: str, tmp_path: Path, port: int, master_port: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {**node_env(), "RPC_CLI_NODE": f"127.0.0.1:{port}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", "-c", localised(block, tmp_path, port, master_port)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_the_by_hand_commands_run_as_written(tmp_path: Path) -> None:
    done = run_shell(blocks("sh")[1], tmp_path, free_port())
    assert done.returncode == 0, done.stderr
    assert "copying disk 3" in done.stdout and '"result": 3' in done.stdout
    assert '"result":1' in done.stdout  # the curl
    assert "Traceback" not in done.stderr


def test_the_tls_commands_run_as_written(tmp_path: Path) -> None:
    done = run_shell(blocks("sh")[2], tmp_path, free_port())
    assert done.returncode == 0, done.stderr
    assert '"uuid"' in done.stdout


def test_the_masterd_commands_run_as_written(tmp_path: Path) -> None:
    done = run_shell(blocks("sh")[3], tmp_path, free_port(), free_port())
    assert done.returncode == 0, done.stderr
    assert "alive" in done.stdout and "web" in done.stdout  # the nodes table
    assert "node.registered" in done.stdout and "disk.copied" in done.stdout  # the events
    assert "Traceback" not in done.stderr


async def test_the_program_runs_as_written(tmp_path: Path) -> None:
    (python,) = blocks("python")
    (nodes,) = blocks("toml")
    async with run_node() as node:
        (tmp_path / "nodes.toml").write_text(nodes.replace("1811", str(node.port)))
        (tmp_path / "program.py").write_text(python.replace("1811", str(node.port)))
        done = subprocess.run(
            [sys.executable, "program.py"], cwd=tmp_path, env=node_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "node1 ok"
