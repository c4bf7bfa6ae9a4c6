"""The event spool on its own: bounded, durable, counting across restarts."""

from __future__ import annotations

from pathlib import Path

from noded.master.spool import SPOOL_DROPPED, NewEvent, Spool


def new(n: int, kind: str = "t") -> NewEvent:
    return NewEvent(kind, {"n": n}, "fnc", float(n))


def test_events_get_seqs_and_are_forgotten_once_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_events=10)
    assert spool.append([new(0), new(1), new(2)]) == 0
    pending = spool.pending(2)
    assert [(e.seq, e.data, e.fnc_id) for e in pending] == [
        (1, {"n": 0}, "fnc"),
        (2, {"n": 1}, "fnc"),
    ]
    spool.acknowledge(2)
    assert [e.seq for e in spool.pending(10)] == [3]
    assert spool.count == 1


def test_it_survives_a_restart_with_its_id_and_its_count(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_events=10)
    spool.append([new(0), new(1)])
    spool.acknowledge(1)
    spool_id = spool.spool_id
    spool.close()
    again = Spool(tmp_path / "s", max_events=10)
    assert again.spool_id == spool_id
    assert [e.seq for e in again.pending(10)] == [2]
    again.append([new(2)])
    assert [e.seq for e in again.pending(10)] == [2, 3]


def test_full_it_drops_the_oldest_and_records_how_many(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_events=5)
    dropped = spool.append([new(n) for n in range(8)])
    assert dropped == 4  # three over, and room for the spool.dropped event
    left = spool.pending(10)
    assert len(left) == 5 == spool.count
    assert [e.data["n"] for e in left[:-1]] == [4, 5, 6, 7]
    assert left[-1].type == SPOOL_DROPPED and left[-1].data["count"] == 4
    assert [e.seq for e in left] == sorted(e.seq for e in left)


def test_events_lost_before_the_spool_are_counted_too(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_events=5)
    spool.append([new(0)], lost=3)
    left = spool.pending(10)
    assert left[-1].type == SPOOL_DROPPED and left[-1].data["count"] == 3


def test_a_damaged_spool_is_set_aside_for_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(b"this is not an sqlite database" * 100)
    spool = Spool(path, max_events=5)
    assert spool.pending(10) == []
    assert (tmp_path / "s.damaged").exists()


def test_the_relay_socket_is_in_the_state_directory_unless_too_long(tmp_path: Path) -> None:
    from noded.master.relay import relay_address

    assert relay_address(tmp_path, "u1") == str(tmp_path.resolve() / "master.sock")
    assert relay_address(tmp_path / ("d" * 120), "u1") == "@noded-master-u1"


def test_the_link_learns_the_masters_register_lists() -> None:
    from noded.master.link import MasterLink

    link = MasterLink(("m1:1812",), None)
    link.learn(["m1:1812", "m2:1812", "0.0.0.0:1812", "nonsense", 7])
    assert link.masters == ("m1:1812", "m2:1812")
    link.learn(None)
    assert link.masters == ("m1:1812", "m2:1812")
