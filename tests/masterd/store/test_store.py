"""One suite for every store backend (SQLite, and PostgreSQL on a real server the suite
starts: tests/postgres.py), as httpx runs one suite over its transports: the Store
interface, in process."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from masterd.store import migrations, store_for
from masterd.store.base import NewEvent, NodeRecord, Store
from masterd.store.lock import StoreInUse
from rpc_client.errors import BadRequest, NodeConflict, StoreUnavailable

Opener = Callable[[], Awaitable[Store]]
DIALECTS = ("sqlite", "postgres")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database of the backend (PostgreSQL: a new one on the worker's server)."""
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'masterd.sqlite3'}"


@pytest.fixture
async def open_store(store_url: str) -> AsyncIterator[Opener]:
    """Opens the backend's store on one database (again after a close: a restart; or a
    second masterd's, where the backend allows it)."""
    opened: list[Store] = []

    async def opener() -> Store:
        store = store_for(store_url)
        await store.open()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


def node(uuid: str = "u1", **changes: object) -> NodeRecord:
    record = NodeRecord(uuid=uuid, name="n1", address="127.0.0.1", port=1811, boot_id="b",
                        instance="i1", pid=10, version="1.2", labels=("a",),
                        functions=("f",), registered=100.0, last_seen=100.0)  # fmt: skip
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def reported(*seqs: int, spool: str = "s1") -> list[NewEvent]:
    return [NewEvent("u1", "n1", "t.x", 1.0, {"seq": s}, None, spool, s) for s in seqs]


async def test_every_migration_is_applied_once(open_store: Opener, backend: str) -> None:
    store = await open_store()
    assert await store.schema_version() == len(migrations.migrations(backend))
    await store.close()
    assert await (await open_store()).schema_version() == len(migrations.migrations(backend))


def test_both_dialects_have_the_same_migrations() -> None:
    names = {d: [(m.version, m.name) for m in migrations.migrations(d)] for d in DIALECTS}
    assert names["postgres"] == names["sqlite"]


async def test_a_second_open_of_one_sqlite_file_is_refused(
    open_store: Opener, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("a PostgreSQL store is shared by design")
    await open_store()
    with pytest.raises(StoreInUse, match=r"in use by another ganeti-masterd \(pid \d+\)"):
        await open_store()


async def test_nodes_and_their_events_are_kept_across_a_reopen(open_store: Opener) -> None:
    store = await open_store()
    stored = await store.save_node(node(), None, [NewEvent("u1", "n1", "node.registered", 1.0,
                                                           {"k": [1]})])  # fmt: skip
    assert [(e.id, e.seq, e.data) for e in stored] == [(1, None, {"k": [1]})]
    await store.touch_nodes({"u1": 150.0})
    await store.close()
    store = await open_store()
    assert await store.load_nodes() == [node(last_seen=150.0)]
    assert await store.last_event_id() == 1


async def test_a_node_taking_a_dead_ones_name_replaces_it(open_store: Opener) -> None:
    store = await open_store()
    await store.save_node(node(), None, [])
    await store.save_node(node("u2"), "u1", [])
    assert [record.uuid for record in await store.load_nodes()] == ["u2"]


async def test_a_registers_check_reads_only_the_nodes_with_its_uuid_or_name(
    open_store: Opener,
) -> None:
    """Register on a shared store reads these, not the whole fleet (1,000 nodes joining
    at once read it 1,000 times: seconds a Register on PostgreSQL, in turn)."""
    store = await open_store()
    for i in range(5):
        await store.save_node(node(f"u{i}", name=f"n{i}"), None, [])
    found = await store.load_nodes(uuid="u1", name="n3")
    assert sorted(record.uuid for record in found) == ["u1", "u3"]
    assert await store.load_nodes(uuid="u9", name="n9") == []
    assert len(await store.load_nodes()) == 5


async def test_each_seq_is_stored_once_and_acked_counts_without_gaps(open_store: Opener) -> None:
    store = await open_store()
    first = await store.add_reported("u1", "n1", "s1", reported(1, 2, 4))
    assert first.acked == 2 and [e.seq for e in first.stored] == [1, 2, 4]
    again = await store.add_reported("u1", "n1", "s1", reported(2, 3, 4))
    assert again.acked == 4 and [e.seq for e in again.stored] == [3]
    other_spool = await store.add_reported("u1", "n1", "s2", reported(1, spool="s2"))
    assert other_spool.acked == 1 and len(other_spool.stored) == 1
    seqs = [(e.seq, e.data) for e in await store.events_after(0, 100)]
    assert seqs == [(1, {"seq": 1}), (2, {"seq": 2}), (4, {"seq": 4}), (3, {"seq": 3}),
                    (1, {"seq": 1})]  # fmt: skip


async def test_one_reports_events_keep_their_order_and_a_repeated_seq_is_stored_once(
    open_store: Opener,
) -> None:
    """PostgreSQL inserts a Report's events in one statement: the ids it returns must
    still follow the events' order, and each stored event its own id."""
    store = await open_store()
    await store.add_reported("u1", "n1", "s1", reported(2))
    result = await store.add_reported("u1", "n1", "s1", reported(5, 2, 3, 5, 1, 4))
    assert [e.seq for e in result.stored] == [5, 3, 1, 4] and result.acked == 5
    read = await store.events_after(0, 100)  # in id order (ids may have gaps)
    assert [e.seq for e in read] == [2, 5, 3, 1, 4]
    assert [(e.id, e.seq) for e in result.stored] == [(e.id, e.seq) for e in read[1:]]


async def test_events_after_reads_from_a_position_in_id_order(open_store: Opener) -> None:
    store = await open_store()
    await store.add_reported("u1", "n1", "s1", reported(*range(1, 11)))
    ids = [e.id for e in await store.events_after(4, 3)]
    assert ids == [4, 5, 6] and await store.last_event_id() == 10
    assert await store.events_after(11, 10) == []


async def test_events_stored_before_a_time_expire_oldest_first_a_batch_at_a_time(
    open_store: Opener,
) -> None:
    store = await open_store()
    await store.add_reported("u1", "n1", "s1", reported(*range(1, 6)))
    assert await store.expire_events(time.time() - 3600, 10) == 0  # none that old
    assert await store.expire_events(time.time() + 1, 2) == 2  # a batch: the oldest two
    assert [e.seq for e in await store.events_after(0, 10)] == [3, 4, 5]
    assert await store.expire_events(time.time() + 1, 10) == 3
    assert await store.events_after(0, 10) == [] and await store.last_event_id() == 0
    again = await store.add_reported("u1", "n1", "s1", reported(6))
    assert [e.id for e in again.stored] == [6]  # ids never go back


async def test_reports_at_once_are_each_stored_and_acknowledged(open_store: Opener) -> None:
    store = await open_store()
    spools = [f"s{n}" for n in range(20)]
    results = await asyncio.gather(
        *(store.add_reported("u1", "n1", spool, reported(1, 2, 3, spool=spool))
          for spool in spools)
    )  # fmt: skip
    assert [r.acked for r in results] == [3] * 20
    assert sorted(e.id for r in results for e in r.stored) == list(range(1, 61))


async def test_live_instances_are_those_renewed_lately(open_store: Opener) -> None:
    store = await open_store()
    await store.add_instance("i1", "127.0.0.1:1812", 1, time.time())
    await store.add_instance("i2", "127.0.0.1:1813", 2, time.time())
    await store.renew_instance("i2")
    assert await store.live_instances(60.0) == ["127.0.0.1:1812", "127.0.0.1:1813"]
    await asyncio.sleep(0.3)
    await store.renew_instance("i2")
    assert await store.live_instances(0.2) == ["127.0.0.1:1813"]


# --- several masters on one store (PostgreSQL) -------------------------------------


@pytest.fixture
async def two_masters(open_store: Opener, backend: str) -> tuple[Store, Store]:
    if backend == "sqlite":
        pytest.skip("an SQLite store serves one masterd")
    return await open_store(), await open_store()


async def test_a_seq_reported_to_two_masters_at_once_is_stored_once(
    two_masters: tuple[Store, Store],
) -> None:
    first, second = two_masters
    results = await asyncio.gather(*(
        store.add_reported("u1", "n1", "s1", reported(*range(1, 51)))
        for store in (first, second, first, second)
    ))  # fmt: skip
    assert sorted(e.seq or 0 for r in results for e in r.stored) == list(range(1, 51))
    assert all(r.acked == 50 for r in results)
    events = await second.events_after(0, 1000)
    assert [e.id for e in events] == sorted(e.id for e in events) and len(events) == 50


async def test_last_seen_never_goes_back_whichever_master_flushes(
    two_masters: tuple[Store, Store],
) -> None:
    first, second = two_masters
    await first.save_node(node(), None, [])
    await first.touch_nodes({"u1": 300.0})
    await second.touch_nodes({"u1": 200.0})  # an older heartbeat in another's memory
    assert [n.last_seen for n in await second.load_nodes()] == [300.0]


async def test_events_stored_through_one_master_wake_the_other(
    two_masters: tuple[Store, Store],
) -> None:
    first, second = two_masters
    woken: asyncio.Queue[int] = asyncio.Queue()
    second.subscribe(woken.put_nowait)
    await first.add_reported("u1", "n1", "s1", reported(1))
    async with asyncio.timeout(5):
        assert await woken.get() == 1  # listening (or its first poll found it)
    start = time.monotonic()
    result = await first.add_reported("u1", "n1", "s1", reported(2, 3))
    async with asyncio.timeout(5):
        while await woken.get() < result.stored[-1].id:  # a late poll's or NOTIFY's 1
            pass
    assert time.monotonic() - start < 0.5  # NOTIFY, not the 1 s fallback poll


async def test_a_node_name_taken_through_another_master_is_a_conflict(
    two_masters: tuple[Store, Store],
) -> None:
    first, second = two_masters
    await first.save_node(node(), None, [])
    with pytest.raises(NodeConflict):
        await second.save_node(node("u2"), None, [])
    assert [n.uuid for n in await first.load_nodes()] == ["u1"]


async def test_a_lapsed_owner_loses_its_job_to_a_claim_and_starts_no_node(
    two_masters: tuple[Store, Store],
) -> None:
    from tests.masterd.store.test_store_jobs import job

    old, new = two_masters
    for store in two_masters:
        store.owner_lapse_s = 0.5  # type: ignore[attr-defined]
    await old.add_instance("m1", "127.0.0.1:1812", 1, time.time())
    await new.add_instance("m2", "127.0.0.1:1813", 2, time.time())
    assert await old.claim_jobs("m1") == []
    await old.add_job(job())  # owned by m1
    await old.record_asked("j1", "n0", "r0", time.time())
    assert await new.claim_jobs("m2") == []  # m1 is live: its job stays its own
    await asyncio.sleep(0.7)  # m1 paused past its lapse; m2 renews
    await new.renew_instance("m2")
    assert [j.id for j in await new.claim_jobs("m2")] == ["j1"]
    await old.renew_instance("m1")  # m1 wakes up: it does not own the job any more
    with pytest.raises(StoreUnavailable, match="no longer holds it"):
        await old.record_asked("j1", "n1", "r1-old", time.time())
    await new.record_asked("j1", "n1", "r1", time.time())
    assert (await new.job_progress("j1")).request_ids == {"n0": "r0", "n1": "r1"}


async def test_of_two_claims_at_once_one_owns_the_job(two_masters: tuple[Store, Store]) -> None:
    from tests.masterd.store.test_store_jobs import job

    first, second = two_masters
    await first.add_job(job())  # owned by m1, which has no live row
    await first.add_instance("m2", "127.0.0.1:1812", 2, time.time())
    await second.add_instance("m3", "127.0.0.1:1813", 3, time.time())
    claims = await asyncio.gather(first.claim_jobs("m2"), second.claim_jobs("m3"))
    assert sorted(len(claimed) for claimed in claims) == [0, 1]
    stored = await first.get_job("j1")
    assert stored is not None and stored.owner == claims[1 if claims[1] else 0][0].owner


async def test_one_request_id_sent_to_two_masters_at_once_makes_one_job(
    two_masters: tuple[Store, Store],
) -> None:
    from tests.masterd.store.test_store_jobs import job

    first, second = two_masters
    made = await asyncio.gather(first.add_job(job("j1", request_id="r")),
                                second.add_job(job("j2", request_id="r")))  # fmt: skip
    assert made[0].id == made[1].id
    assert [j.id for j in await second.list_jobs(10)] == [made[0].id]


async def test_a_value_the_store_cannot_hold_is_a_bad_request_and_the_next_write_goes_on(
    open_store: Opener,
) -> None:
    """Defect 7 (attack16): a seq beyond 64 bits was 503 StoreUnavailable on PostgreSQL
    (clients retry for ever) and, on SQLite, an OverflowError that left BEGIN IMMEDIATE
    open, failing the next innocent write."""
    store = await open_store()
    with pytest.raises(BadRequest, match="cannot hold a value"):
        await store.add_reported("u1", "n1", "s1", reported(2**63))
    with pytest.raises(BadRequest, match="cannot hold a value"):
        await store.save_node(node(pid=2**63), None, [])
    assert (await store.add_reported("u1", "n1", "s1", reported(1))).acked == 1
    await store.save_node(node(), None, [])
    assert [n.uuid for n in await store.load_nodes()] == ["u1"]


async def test_a_jobs_records_stored_through_one_master_wake_the_other(
    two_masters: tuple[Store, Store],
) -> None:
    """Defect 4 (attack16): a node's end and the job's state are NOTIFYed at their commit."""
    from masterd.store.jobs import NewResult
    from tests.masterd.store.test_store_jobs import job

    first, second = two_masters
    woken: asyncio.Queue[str] = asyncio.Queue()
    second.subscribe_jobs(woken.put_nowait)
    async with asyncio.timeout(5):
        assert await woken.get() == ""  # listening: any job may have changed meanwhile
    await first.add_job(job())
    start = time.monotonic()
    await first.record_result("j1", NewResult("n0", "ok", None, 1, None))
    async with asyncio.timeout(5):
        assert await woken.get() == "j1"
    await first.set_job_state("j1", "finished", time.time())
    async with asyncio.timeout(5):
        assert await woken.get() == "j1"
    assert time.monotonic() - start < 1.0


async def test_an_sqlite_file_reached_by_a_symlink_or_hard_link_is_refused(
    open_store: Opener, backend: str, tmp_path: Path
) -> None:
    """Defect 5 (attack16): the lock is the file's, not its path's."""
    if backend != "sqlite":
        pytest.skip("a PostgreSQL store is shared by design")
    await open_store()
    database = tmp_path / "masterd.sqlite3"
    (tmp_path / "sym.sqlite3").symlink_to(database)
    (tmp_path / "hard.sqlite3").hardlink_to(database)
    for other in ("sym.sqlite3", "hard.sqlite3"):
        store = store_for(f"sqlite:///{tmp_path / other}")
        with pytest.raises(StoreInUse, match=r"in use by another ganeti-masterd \(pid \d+\)"):
            await store.open()
