"""The spool is bounded in bytes, and never starves the state directory's file system:
with no master reachable, large events used to fill it (10,000 events of up to 256 KiB)
until every new call got 507."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from masterd.local import free_port
from noded.cli import parse_config
from noded.master.spool import SPOOL_DROPPED, NewEvent, Spool
from tests.disks import small_disk
from tests.helpers import eventually, get_text, metric
from tests.noded.master.running import node_with_master, run_call

BLOB_KIB = 250


def big(n: int) -> NewEvent:
    data = {"blob": "x" * (BLOB_KIB * 1024), "n": n}
    return NewEvent("disk.report", data, None, float(n), len(orjson.dumps(data)))


def test_past_its_bytes_the_oldest_are_dropped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_events=1000, max_bytes=1 << 20)
    dropped = sum(spool.append([big(n)]) for n in range(10))
    assert spool.bytes <= 1 << 20
    left = spool.pending(100)
    kept = [e.data["n"] for e in left if e.type == "disk.report"]
    assert kept == [6, 7, 8, 9]  # the newest that fit (4 x 250 KiB), with spool.dropped
    assert sum(e.data["count"] for e in left if e.type == SPOOL_DROPPED) <= dropped
    assert dropped >= 6 and left[-1].data["max_bytes"] == 1 << 20


def test_the_files_stay_near_the_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_events=1000, max_bytes=2 << 20)
    for n in range(0, 80, 4):
        spool.append([big(n + i) for i in range(4)])  # 1 MiB a transaction, as the queue
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert spool.bytes <= 2 << 20 and on_disk <= (2 + 4) << 20, on_disk


def spooled(state_dir: Path) -> list[str]:
    db = sqlite3.connect(f"file:{state_dir / 'master-spool.sqlite3'}?mode=ro", uri=True)
    try:
        return [kind for (kind,) in db.execute("SELECT type FROM events ORDER BY seq")]
    finally:
        db.close()


def spool_files(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in state_dir.glob("master-spool.sqlite3*"))


async def calls_answer(node: object, count: int) -> None:
    async with node.client() as client:  # type: ignore[attr-defined]
        for n in range(count):
            state = await client.start_function("echo", {"value": n}, timeout=10)
            assert state.finished and state.result == n


async def test_no_master_and_large_events_leave_the_disk_to_the_calls(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    with small_disk(tmp_path / "disk", "24m") as disk:
        args = ("--spool-max-bytes", str(2 << 20))
        async with node_with_master([nobody], disk.path / "n", *args) as node:
            for _ in range(4):  # 40 MB of events on a 24 MB disk
                state = await run_call(node, "emit_big", {"count": 40, "kib": BLOB_KIB})
                assert state.result == 40
            await calls_answer(node, 30)
            await eventually(lambda: "spool.dropped" in node.log_text(), 20)
            assert spool_files(node.state_dir) <= (2 + 4) << 20
            assert node.log_text().count("spool.dropped") <= 2  # at most one line in 10 s
            _, page, _ = await get_text(node, "/metrics")
            assert metric(page, "noded_master_events_dropped_total") >= 100
        assert SPOOL_DROPPED in spooled(disk.path / "n" / "state")


async def test_a_full_disk_under_the_spool_drops_events_not_calls(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    with small_disk(tmp_path / "disk", "16m") as disk:
        args = ("--spool-max-bytes", str(64 << 20))  # more than the disk: the disk decides
        async with node_with_master([nobody], disk.path / "n", *args) as node:
            await calls_answer(node, 1)
            disk.fill(leave_bytes=6 << 20)
            state = await run_call(node, "emit_big", {"count": 40, "kib": BLOB_KIB})
            assert state.result == 40
            await eventually(lambda: "spool.write_failed" in node.log_text(), 20)
            await calls_answer(node, 10)
            _, page, _ = await get_text(node, "/metrics")
            assert metric(page, "noded_master_events_dropped_total") > 0
            assert node.log_text().count("spool.write_failed") <= 2  # at most one in 10 s
            disk.free()
            await run_call(node, "emit_big", {"count": 1, "kib": 1})
            await eventually(lambda: SPOOL_DROPPED in spooled(node.state_dir), 20)


def test_the_byte_bound_has_its_edge_and_its_toml(tmp_path: Path) -> None:
    assert parse_config(["--spool-max-bytes", str(1 << 20)])[1].spool_max_bytes == 1 << 20
    with pytest.raises(SystemExit):
        parse_config(["--spool-max-bytes", str((1 << 20) - 1)])
    config = tmp_path / "noded.toml"
    config.write_text("spool-max-bytes = 2097152\n")
    assert parse_config(["--config", str(config)])[1].spool_max_bytes == 2 << 20


def test_a_spool_on_a_full_disk_is_an_error_not_set_aside(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        Spool(disk.path / "s", max_events=10).close()
        disk.fill()
        (disk.path / "s-wal").unlink(missing_ok=True)  # opening must write again
        (disk.path / "s-shm").unlink(missing_ok=True)
        with pytest.raises(OSError, match="cannot open the event spool"):
            Spool(disk.path / "s", max_events=10)
        assert not (disk.path / "s.damaged").exists()
