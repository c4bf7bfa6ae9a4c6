"""``MasterClient`` and its blocking twin against a real ganeti-masterd, with simulated
nodes (tests/masterd/simulated.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator

import pytest

import masterd
from masterd import blocking
from masterd.local import free_port
from masterd.master_client import MasterClient, MasterEvent
from rpc_client.errors import BadRequest, ConnectionLost, NodeUnreachable
from tests.masterd.simulated import FNC_ID, Fleet, module_fleet


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    yield from module_fleet(tmp_path_factory)


def client_of(cluster: Fleet) -> MasterClient:
    return masterd.MasterClient("127.0.0.1", cluster.masterd.port)


async def test_nodes_have_their_states_labels_and_versions(cluster: Fleet) -> None:
    async with client_of(cluster) as master, cluster.beating():
        nodes = {node.name: node for node in await master.nodes()}
    assert {name: node.state for name, node in nodes.items()} == {
        "up": "alive", "gone": "missing", "never": "unknown"}  # fmt: skip
    up = nodes["up"]
    assert (up.uuid, up.labels, up.version) == (cluster.up["uuid"], ("rack1",), "1.2.3")
    assert up.last_seen is not None and up.registered is not None
    assert up.registered <= up.last_seen
    assert nodes["never"].labels == ("x",) and nodes["never"].last_seen is None


async def test_events_from_a_position_with_filters(cluster: Fleet) -> None:
    start = await cluster.last_position()
    await cluster.report("disk.replacing", fnc_id=FNC_ID)
    await cluster.report("app.ready")
    async with client_of(cluster) as master:
        registered = (await master.events(0)).events[:2]
        assert [(e.type, e.node) for e in registered] == [
            ("node.registered", "gone"), ("node.registered", "up")]  # fmt: skip
        everything = await master.events(start)
        assert [e.type for e in everything.events] == ["disk.replacing", "app.ready"]
        assert everything.next == everything.events[-1].id + 1
        (disk,) = (await master.events(start, types=["disk.*"])).events
        assert (disk.node, disk.fnc_id, disk.data) == ("up", FNC_ID, {"seq": disk.seq})
        of_gone = (await master.events(0, nodes=["gone"])).events
        assert [(e.node, e.type, e.seq) for e in of_gone] == [("gone", "node.registered", None)]
        later = await master.events(disk.id + 1)
        assert [e.type for e in later.events] == ["app.ready"]
        assert (await master.events(everything.next)).events == []


async def test_following_sees_an_event_reported_meanwhile(cluster: Fleet) -> None:
    async with client_of(cluster) as master:

        async def first_new() -> MasterEvent:
            async for item in master.follow_events(types=["app.*"], wait_s=0.5):
                return item
            raise AssertionError("follow_events ended")

        following = asyncio.create_task(first_new())
        await asyncio.sleep(0.3)  # it waits, over more than one long-poll below
        await cluster.report("disk.ignored")
        await asyncio.sleep(0.6)
        assert not following.done()
        await cluster.report("app.started")
        item = await asyncio.wait_for(following, 10)
    assert (item.type, item.node) == ("app.started", "up")


async def test_a_master_that_is_down_is_unreachable_in_one_line() -> None:
    port = free_port()
    async with MasterClient("127.0.0.1", port) as master:
        with pytest.raises(NodeUnreachable) as caught:
            await master.nodes()
    message = str(caught.value)
    assert f"nothing listens at 127.0.0.1:{port}" in message and "ganeti-masterd" in message
    assert "\n" not in message


async def test_a_request_the_master_refuses_is_its_error(cluster: Fleet) -> None:
    async with client_of(cluster) as master:
        with pytest.raises(ValueError, match="from_"):
            await master.events(-1)
        # the contract's error, mapped: a wire call the client itself does not check
        with pytest.raises(BadRequest, match="from"):
            await master._wire.call("WaitForEvents", {"timeout": 0}, 10)


async def test_the_blocking_twin(cluster: Fleet) -> None:
    def in_a_thread() -> tuple[list[str], list[str], MasterEvent]:
        with blocking.MasterClient("127.0.0.1", cluster.masterd.port) as master:
            states = sorted(node.state for node in master.nodes())
            page = master.events(0, types=["node.*"])
            start = master.events(None).next  # what is stored from now on
            follower = master.follow_events(start, types=["app.*"], wait_s=1.0)
            asyncio.run_coroutine_threadsafe(cluster.report("app.ready"), loop)
            first = next(follower)
            assert isinstance(follower, Generator)
            follower.close()  # leaving early stops the long-poll
            return states, [e.type for e in page.events], first

    loop = asyncio.get_running_loop()
    async with cluster.beating():
        states, types, first = await asyncio.wait_for(asyncio.to_thread(in_a_thread), 20)
    assert states == ["alive", "missing", "unknown"]
    assert types == ["node.registered", "node.registered"]
    assert first.type == "app.ready"


async def test_a_master_that_closes_the_connection_is_named_the_master() -> None:
    """What plain HTTP to a TLS masterd looks like: the request read, then closed."""

    async def read_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(read_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with masterd.MasterClient("127.0.0.1", port) as master:
            with pytest.raises(ConnectionLost) as lost:
                await master.jobs()
    finally:
        server.close()
    said = str(lost.value)
    assert "the master closed the connection" in said and "the node" not in said, said
    assert "if the master speaks TLS" in said
