"""``rpc-cli --master``: nodes and events of a real ganeti-masterd with simulated nodes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from masterd.local import free_port
from tests.helpers import run_node
from tests.masterd.cli.test_operator import one_line, rpc_cli
from tests.masterd.daemon.running import events, registration, start_masterd
from tests.masterd.simulated import FNC_ID, Fleet, module_fleet


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    yield from module_fleet(tmp_path_factory)


def rows(out: str) -> dict[str, list[str]]:
    """The table's rows by name (the header and the count left out)."""
    lines = out.strip().splitlines()
    return {line.split()[0]: line.split() for line in lines[1:-1]}


async def test_nodes_is_a_table_of_states(cluster: Fleet) -> None:
    async with cluster.beating():
        status, out, err = await rpc_cli("--master", cluster.masterd.address, "nodes")
    assert status == 0, err
    assert out.splitlines()[0].split() == ["NAME", "STATE", "LAST", "SEEN", "LABELS",
                                           "VERSION", "ADDRESS"]  # fmt: skip
    table = rows(out)
    assert table["up"][1] == "alive" and table["up"][2:4] in (["0s", "ago"], ["1s", "ago"])
    assert table["up"][4:6] == ["rack1", "1.2.3"]
    assert table["gone"][1] == "missing" and table["never"][1:3] == ["unknown", "never"]
    assert out.strip().splitlines()[-1] == "3 nodes: 1 alive, 1 missing, 1 unknown"


async def test_nodes_as_json_from_the_environment(cluster: Fleet) -> None:
    env = {"NODED_MASTER": cluster.masterd.address}
    status, out, err = await rpc_cli("nodes", "--json", env=env)
    assert status == 0, err
    nodes = {node["name"]: node for node in orjson.loads(out)["nodes"]}
    assert nodes["gone"]["state"] == "missing" and nodes["never"]["labels"] == ["x"]
    assert nodes["up"]["uuid"] == cluster.up["uuid"]


async def test_events_one_line_each_filtered_by_type_and_from(cluster: Fleet) -> None:
    start = await cluster.last_position()
    await cluster.report("disk.replacing", fnc_id=FNC_ID)
    await cluster.report("app.ready")
    master = ("--master", cluster.masterd.address)
    status, out, err = await rpc_cli(*master, "events", "--from", str(start))
    assert status == 0, err
    disk, app = out.splitlines()
    fields = re.split(r"  +", disk)  # columns padded: ids of several digits stay aligned
    assert fields[0] == str(start) and fields[1].endswith("Z")
    assert fields[2:5] == ["up", "disk.replacing", FNC_ID] and orjson.loads(fields[5])
    assert re.split(r"  +", app)[2:5] == ["up", "app.ready", "-"]
    assert disk.index("disk.replacing") == app.index("app.ready")
    status, out, _ = await rpc_cli(*master, "events", "--type", "disk.*", "--type", "x.*")
    assert status == 0 and [re.split(r"  +", line)[3] for line in out.splitlines()] == [
        "disk.replacing"]  # fmt: skip
    status, out, _ = await rpc_cli(*master, "events", "--names", "gone", "--json")
    (registered,) = [orjson.loads(line) for line in out.splitlines()]
    assert status == 0 and registered["type"] == "node.registered"
    assert registered["seq"] is None and registered["node"] == "gone"


async def test_follow_prints_events_reported_meanwhile_until_ctrl_c(cluster: Fleet) -> None:
    start = await cluster.last_position()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "--master", cluster.masterd.address, "events",
        "--follow", "--type", "follow.*", "--from", str(start),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await cluster.report("follow.first")  # before it asked, or after: shown once either way
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        await cluster.report("ignored.by.type")
        await cluster.report("follow.second")
        second = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"follow.first" in first and b"follow.second" in second
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and out == b"" and err == b""


async def test_a_master_that_is_down_is_one_line_and_exit_4() -> None:
    port = free_port()
    for command in ("nodes", "events"):
        status, out, err = await rpc_cli("--master", f"127.0.0.1:{port}", command)
        assert status == 4 and out == ""
        line = one_line(err)
        assert line.startswith("rpc-cli: NodeUnreachable:") and len(err.splitlines()) == 1
        assert f"nothing listens at 127.0.0.1:{port}" in line and "ganeti-masterd" in line
        assert line.endswith(f"(master 127.0.0.1:{port})"), line


async def test_a_masters_error_names_it_a_master(cluster: Fleet) -> None:
    address = cluster.masterd.address
    status, out, err = await rpc_cli("--master", address, "job", "show", "nosuchjob")
    line = one_line(err)
    assert status != 0 and out == "" and line.startswith("rpc-cli: UnknownJob:"), err
    assert line.endswith(f"(master {address})") and "(node " not in line, line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["events"], "events needs --master HOST:PORT (or $NODED_MASTER)"),
        (["--master", "http://m:1812", "nodes"], "--master 'http://m:1812': give HOST"),
        (["--master", "m:0", "events"], "port must be a number"),
        (["--master", "m", "events", "--from", "-1"], "give an event id >= 0"),
    ],
)
async def test_usage_mistakes_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    status, _, err = await rpc_cli(*args, env={"NODED_MASTER": ""})
    assert status == 2 and says in one_line(err)


@pytest.mark.slow
async def test_follow_waits_for_a_master_that_restarted(tmp_path: Path) -> None:
    masterd = await start_masterd([], tmp_path)
    node = registration("n1")
    report = {"uuid": node["uuid"], "spool": "s", "events": events(1, type="app.one")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "--master", masterd.address, "events",
        "--follow", "--type", "app.*",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await masterd.ok("Register", node)
        await masterd.ok("Report", report)
        assert b"app.one" in await asyncio.wait_for(proc.stdout.readline(), 30)
        await masterd.kill()
        notice = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"following again once it answers" in notice
        masterd = await start_masterd([], tmp_path, port=masterd.port)
        report["events"] = events(2, type="app.two")
        await masterd.ok("Report", report)  # the registration survived in the store
        assert b"app.two" in await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"answers again" in await asyncio.wait_for(proc.stderr.readline(), 30)
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await masterd.stop()


async def test_master_pointed_at_a_noded_says_so() -> None:
    async with run_node() as node:
        status, _, err = await rpc_cli("--master", f"127.0.0.1:{node.port}", "nodes")
    assert status == 2
    assert f"127.0.0.1:{node.port} is a ganeti-noded, not ganeti-masterd" in err
