"""ganeti-masterd under an operator: systemd notify, JSON logs, a TOML config, the unit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from masterd.daemon.cli import parse_config
from tests.helpers import ROOT
from tests.masterd.daemon.running import registration, run_masterd

UNIT = ROOT / "doc" / "examples" / "systemd" / "ganeti-masterd.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notify socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.setblocking(False)
        yield sock


async def messages(sock: socket.socket, until: str, timeout_s: float = 15) -> list[str]:
    """Datagrams received until one contains ``until``."""
    got: list[str] = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            got.append(sock.recv(4096).decode())
            if until in got[-1]:
                return got
        except BlockingIOError:
            await asyncio.sleep(0.02)
    raise AssertionError(f"no {until!r} in {got}")


async def test_ready_once_listening_and_stopping_on_sigterm(
    notify_socket: socket.socket, tmp_path: Path
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname()}
    async with run_masterd([], workdir=tmp_path, env=env) as masterd:
        ready = await messages(notify_socket, "READY=1")
        assert f"MAINPID={masterd.pid}" in ready[-1]
        masterd.proc.send_signal(signal.SIGTERM)
        await messages(notify_socket, "STOPPING=1")
        assert await masterd.wait_exit(20) == 0


async def test_a_toml_config_and_json_logs(tmp_path: Path) -> None:
    config = tmp_path / "masterd.toml"
    config.write_text('heartbeat-s = 7.5\nlog-format = "json"\nmax-report-events = 3\n')
    args = ["--config", str(config), "--max-report-events", "4"]  # flags win
    async with run_masterd(args, workdir=tmp_path) as masterd:
        answer = await masterd.ok("Register", registration("n1"))
        assert answer["heartbeat_s"] == 7.5
        lines = [json.loads(line) for line in masterd.log_text().splitlines() if line.strip()]
        ready = next(line for line in lines if line.get("event") == "daemon.ready")
        assert ready["pid"] == masterd.pid and ready["store"].startswith("sqlite:////")
    assert "unknown setting" in _cli_error(tmp_path, "no-such = 1")


def _cli_error(tmp_path: Path, toml: str) -> str:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    done = subprocess.run(
        [sys.executable, "-m", "masterd.daemon", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 2
    return done.stderr


def test_the_unit_file_verifies() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = Path(os.environ.get("TMPDIR", "/tmp")) / f"ganeti-masterd-{os.getpid()}.service"
    daemon = Path(sys.executable).with_name("ganeti-masterd")
    unit.write_text(UNIT.read_text().replace("/opt/noded/bin/ganeti-masterd", str(daemon)))
    try:
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    finally:
        unit.unlink()
    assert done.returncode == 0, done.stderr
    assert "Type=notify" in UNIT.read_text()


def test_the_example_config_is_every_setting_it_names() -> None:
    example = ROOT / "doc" / "examples" / "masterd.toml"
    _, config = parse_config(["--config", str(example)])
    assert config.port == 1812 and config.heartbeat_s == 30


def test_every_flag_of_the_help_is_in_the_flag_table_and_the_example_config() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "masterd.daemon", "--help"], capture_output=True, text=True,
        timeout=60, cwd=ROOT,
    ).stdout  # fmt: skip
    flags = set(re.findall(r"^  (--[a-z][a-z-]+)", help_text, re.MULTILINE)) - {"--help"}
    doc = (ROOT / "doc" / "masterd.md").read_text()
    table = doc[doc.index("## Running it") : doc.index("## Master commands")]
    assert len(flags) > 20
    assert sorted(f for f in flags if not re.search(rf"`[^`]*{f}(?![a-z-])", table)) == []
    example = (ROOT / "doc" / "examples" / "masterd.toml").read_text()
    settings = {f for f in flags if re.search(rf"^#? ?{f[2:]} = ", example, re.MULTILINE)}
    assert sorted(flags - settings - {"--config", "--version"}) == []
    _, config = parse_config(["--config", str(ROOT / "doc" / "examples" / "masterd.toml")])
    assert config.tls and config.bind == "0.0.0.0"
