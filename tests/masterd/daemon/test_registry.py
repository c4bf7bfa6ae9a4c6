"""Register, Heartbeat and ListNodes against a real ganeti-masterd, as nodes would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.masterd.daemon.backends import BACKENDS, store_args
from tests.masterd.daemon.running import Masterd, registration, run_masterd, state_of, until

HEARTBEAT_S = 0.5


@pytest.fixture(params=BACKENDS)
async def masterd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Masterd]:
    nodes = tmp_path / "nodes.toml"
    nodes.write_text(
        '[[node]]\nname = "n1"\naddress = "127.0.0.1"\nlabels = ["db"]\n'
        '[[node]]\nname = "never"\naddress = "192.0.2.9"\nport = 1999\nlabels = ["x"]\n'
    )
    args = ["--heartbeat-s", str(HEARTBEAT_S), "--nodes", str(nodes), *store_args(request)]
    async with run_masterd(args, workdir=tmp_path / "m") as daemon:
        yield daemon


async def _events(masterd: Masterd, types: list[str] | None = None) -> list[dict]:
    answer = await masterd.ok("WaitForEvents", {"from": 0, "timeout": 0, "types": types})
    return answer["events"]


async def test_a_registered_node_is_alive_with_its_labels_and_the_nodes_files(
    masterd: Masterd,
) -> None:
    body = registration("n1", labels=["rack1"])
    answer = await masterd.ok("Register", body)
    assert answer == {"heartbeat_s": HEARTBEAT_S, "masters": [masterd.address]}
    node = (await masterd.nodes())["n1"]
    assert node["state"] == "alive" and node["uuid"] == body["uuid"]
    assert node["labels"] == ["rack1", "db"]
    fields = ("address", "port", "version", "boot_id", "instance")
    assert {key: node[key] for key in fields} == {key: body[key] for key in fields}
    assert node["registered"] <= node["last_seen"]


async def test_a_listed_node_never_registered_is_unknown(masterd: Masterd) -> None:
    never = (await masterd.nodes())["never"]
    assert never["state"] == "unknown" and never["labels"] == ["x"]
    assert never["address"] == "192.0.2.9" and never["port"] == 1999
    assert never["last_seen"] is None and never["instance"] is None


async def test_register_again_is_idempotent(masterd: Masterd) -> None:
    body = registration("n2")
    await masterd.ok("Register", body)
    await masterd.ok("Register", body)
    assert [e["type"] for e in await _events(masterd)] == ["node.registered"]
    assert sorted(await masterd.nodes()) == ["n1", "n2", "never"]


async def test_a_silent_node_goes_missing_and_a_heartbeat_brings_it_back(
    masterd: Masterd,
) -> None:
    body = registration("n3")
    await masterd.ok("Register", body)
    await until(lambda: _state_is(masterd, "n3", "missing"))
    beat = {"uuid": body["uuid"], "instance": body["instance"], "running": 2}
    assert await masterd.ok("Heartbeat", beat) == {"reregister": False}
    assert await state_of(masterd, "n3") == "alive"


async def test_heartbeat_asks_unknown_uuids_and_instances_to_register(masterd: Masterd) -> None:
    body = registration("n4")
    await masterd.ok("Register", body)
    known = {"uuid": body["uuid"], "instance": body["instance"], "running": 0}
    assert await masterd.ok("Heartbeat", known) == {"reregister": False}
    assert await masterd.ok("Heartbeat", {**known, "instance": "other"}) == {"reregister": True}
    assert await masterd.ok("Heartbeat", {**known, "uuid": "nobody"}) == {"reregister": True}


async def test_a_new_instance_is_a_restart_and_a_new_boot_id_a_reboot(masterd: Masterd) -> None:
    body = registration("n5")
    await masterd.ok("Register", body)
    await masterd.ok("Register", {**body, "instance": "second"})
    await masterd.ok("Register", {**body, "instance": "third", "boot_id": "boot-2"})
    restarts = await _events(masterd, ["node.restarted"])
    assert [(e["node"], e["seq"], e["data"]["rebooted"]) for e in restarts] == [
        ("n5", None, False), ("n5", None, True)
    ]  # fmt: skip
    assert restarts[1]["data"]["old_instance"] == "second"
    node = (await masterd.nodes())["n5"]
    assert node["instance"] == "third" and node["state"] == "alive"


async def test_a_name_held_by_a_live_node_is_a_conflict_until_it_goes_missing(
    masterd: Masterd,
) -> None:
    first, second = registration("n6"), registration("n6")
    await masterd.ok("Register", first)
    status, answer, _ = await masterd.put("Register", second)
    assert status == 409 and answer["error"]["type"] == "NodeConflict"
    assert first["uuid"] in answer["error"]["message"]
    await until(lambda: _state_is(masterd, "n6", "missing"))
    await masterd.ok("Register", second)
    assert (await masterd.nodes())["n6"]["uuid"] == second["uuid"]
    registered = [e for e in await _events(masterd, ["node.registered"]) if e["node"] == "n6"]
    assert [e["data"]["replaced"] for e in registered] == [None, first["uuid"]]


async def _state_is(masterd: Masterd, name: str, state: str) -> bool:
    return await state_of(masterd, name) == state
