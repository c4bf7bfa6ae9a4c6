"""ganeti-masterd's life: one per SQLite file, SIGTERM, SIGKILL and a restart that
keeps every acknowledged event and registration, a full disk, flags refused."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from masterd.local import free_port
from tests.disks import small_disk
from tests.helpers import node_env
from tests.masterd.daemon.running import (
    Masterd,
    events,
    registration,
    run_masterd,
    spawn,
    start_masterd,
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "masterd.daemon", *args], capture_output=True,
                          text=True, timeout=60, env=node_env())  # fmt: skip


async def all_events(masterd: Masterd) -> list[dict[str, Any]]:
    return (await masterd.ok("WaitForEvents", {"from": 0, "timeout": 0}))["events"]


async def test_a_second_masterd_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    async with run_masterd([], workdir=tmp_path) as first:
        store = f"sqlite:///{tmp_path / 'state' / 'masterd.sqlite3'}"
        second = await asyncio.to_thread(
            run_cli, "--port", str(free_port()), "--state-dir", str(tmp_path / "other"),
            "--store", store,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"in use by another ganeti-masterd (pid {first.pid})" in second.stderr
        assert await first.nodes() == {}  # the first one serves on


async def test_a_second_masterd_reaching_the_file_by_a_symlink_or_hard_link_is_refused(
    tmp_path: Path,
) -> None:
    """attack16 defect 5: the lock was keyed by the path given (``<path>.lock``), so a
    symlink to the file or a hard link started a second masterd on it."""
    async with run_masterd([], workdir=tmp_path / "m") as first:
        database = tmp_path / "m" / "state" / "masterd.sqlite3"
        (tmp_path / "symlink.sqlite3").symlink_to(database)
        (tmp_path / "hardlink.sqlite3").hardlink_to(database)
        for other in ("symlink.sqlite3", "hardlink.sqlite3"):
            second = await asyncio.to_thread(
                run_cli, "--port", str(free_port()), "--state-dir", str(tmp_path / "other"),
                "--store", f"sqlite:///{tmp_path / other}",
            )  # fmt: skip
            assert second.returncode == 1, (other, second.stderr)
            assert f"in use by another ganeti-masterd (pid {first.pid})" in second.stderr
        assert await first.nodes() == {}  # the first one serves on


async def test_sigkill_then_a_restart_keeps_every_acknowledged_event_and_node(
    tmp_path: Path,
) -> None:
    masterd = await start_masterd([], tmp_path)
    node = registration("n1")
    await masterd.ok("Register", node)
    acked = 0

    async def report_forever() -> None:
        nonlocal acked
        seq = 1
        with contextlib.suppress(Exception):  # until the daemon dies under it
            while True:
                body = {"uuid": node["uuid"], "spool": "s", "events": events(seq, seq + 1)}
                acked = (await masterd.ok("Report", body, timeout_s=5))["acked"]
                seq += 2

    answered: list[str] = []

    async def register_forever() -> None:
        with contextlib.suppress(Exception):
            for n in range(10_000):
                await masterd.ok("Register", registration(f"r{n}"), timeout_s=5)
                answered.append(f"r{n}")

    tasks = [asyncio.create_task(report_forever()), asyncio.create_task(register_forever())]
    await asyncio.sleep(0.5)
    await masterd.kill()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert acked > 2 and answered
    async with run_masterd([], workdir=tmp_path) as again:
        nodes = await again.nodes()
        assert set(answered) <= set(nodes)  # every answered Register is kept
        kept = nodes["n1"]
        assert kept["uuid"] == node["uuid"] and kept["instance"] == node["instance"]
        beat = {"uuid": node["uuid"], "instance": node["instance"], "running": 0}
        assert await again.ok("Heartbeat", beat) == {"reregister": False}
        stored = [e["seq"] for e in await all_events(again) if e["seq"] is not None]
        assert set(range(1, acked + 1)) <= set(stored)
        assert len(stored) == len(set(stored))
        resend = {"uuid": node["uuid"], "spool": "s", "events": events(*range(1, acked + 3))}
        assert (await again.ok("Report", resend))["acked"] == acked + 2


async def test_sigterm_stops_it_cleanly_and_heartbeats_are_flushed(tmp_path: Path) -> None:
    masterd = await start_masterd(["--heartbeat-s", "60"], tmp_path)
    node = registration("n1")
    await masterd.ok("Register", node)
    registered = (await masterd.nodes())["n1"]["last_seen"]
    await asyncio.sleep(0.05)
    await masterd.ok("Heartbeat", {"uuid": node["uuid"], "instance": node["instance"],
                                   "running": 1})  # fmt: skip
    seen = (await masterd.nodes())["n1"]["last_seen"]
    assert seen > registered
    assert await masterd.stop() == 0
    assert "daemon.stopped" in masterd.log_text()
    async with run_masterd(["--heartbeat-s", "60"], workdir=tmp_path) as again:
        assert (await again.nodes())["n1"]["last_seen"] == seen


async def test_a_full_disk_refuses_writes_with_507_and_reads_go_on(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", size="4m") as disk:
        store = f"sqlite:///{disk.path / 'masterd.sqlite3'}"
        async with run_masterd(["--store", store], workdir=tmp_path / "m") as masterd:
            node = registration("n1")
            await masterd.ok("Register", node)
            big = [{**e, "data": "x" * 300_000} for e in events(1)]
            disk.fill()
            status, answer, _ = await masterd.put(
                "Report", {"uuid": node["uuid"], "spool": "s", "events": big}
            )
            assert status == 507 and answer["error"]["type"] == "InsufficientStorage"
            status, answer, _ = await masterd.put("Register", registration("n2"))
            assert status == 507 and answer["error"]["type"] == "InsufficientStorage"
            beat = {"uuid": node["uuid"], "instance": node["instance"], "running": 0}
            assert await masterd.ok("Heartbeat", beat) == {"reregister": False}  # memory
            assert list(await masterd.nodes()) == ["n1"]  # reads go on; no half of n2
            assert [e["type"] for e in await all_events(masterd)] == ["node.registered"]
            disk.free()
            body = {"uuid": node["uuid"], "spool": "s", "events": big}
            assert (await masterd.ok("Report", body))["acked"] == 1


def test_flags_that_cannot_work_are_refused_at_start(tmp_path: Path) -> None:
    public = run_cli("--bind", "0.0.0.0", "--state-dir", str(tmp_path))
    assert public.returncode == 2 and "refusing to listen on 0.0.0.0 without TLS" in public.stderr
    relative = run_cli("--store", "sqlite:///relative.db", "--state-dir", str(tmp_path))
    assert relative.returncode == 2 and "four slashes" in relative.stderr
    postgres = run_cli("--store", "postgresql://u@h:port/db", "--state-dir", str(tmp_path))
    assert postgres.returncode == 2 and "postgresql://USER@HOST:PORT/DB" in postgres.stderr


async def test_sigterm_answers_a_waiting_reader_at_once(tmp_path: Path) -> None:
    masterd = await start_masterd([], tmp_path)
    waiting = asyncio.create_task(
        masterd.ok("WaitForEvents", {"from": None, "timeout": 50}, timeout_s=60)
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    masterd.proc.send_signal(signal.SIGTERM)
    answer = await asyncio.wait_for(waiting, 10)
    assert answer["events"] == []
    assert await masterd.wait_exit(10) == 0


async def test_a_start_that_fails_logs_no_stop(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon = spawn([], tmp_path / "m", taken.getsockname()[1])
        assert await daemon.wait_exit(20.0) == 1
    log = daemon.log_text()
    assert "address already in use" in log
    assert "daemon.stopping" not in log and "daemon.stopped" not in log
