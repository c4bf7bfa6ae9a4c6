"""Following a call's output from the master: on_output, follow(), many nodes, blocking."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from masterd import CallOptions, OutputEvent, blocking, call_function, follow
from masterd.call import wait_for_call
from masterd.cluster import Cluster
from masterd.local import LocalNode
from masterd.node import Node
from rpc_client.client import NodeClient
from rpc_client.errors import CallTimeout
from tests.fakes import LossyProxy, fake_node
from tests.helpers import NodeFactory

LINES = "".join(f"line {n}\n" for n in range(4))
WAIT_1_S = CallOptions(wait_s=1)


def stdout_of(events: list[OutputEvent]) -> str:
    return "".join(event.text for event in events if event.stream == "stdout")


async def test_call_function_passes_each_event_as_it_comes(client: NodeClient) -> None:
    events: list[OutputEvent] = []
    seen_at: list[float] = []

    def on_output(event: OutputEvent) -> None:
        events.append(event)
        seen_at.append(time.monotonic())

    began = time.monotonic()
    result = await call_function(
        client, "print_lines", {"count": 4, "delay_s": 0.3}, timeout=20, on_output=on_output
    )
    ended = time.monotonic()
    assert result == 4
    assert stdout_of(events) == LINES
    assert seen_at[0] - began < ended - began - 0.5  # the first line well before the end
    assert {event.node for event in events} == {client.name}
    assert len({event.fnc_id for event in events}) == 1


async def test_follow_attaches_to_a_running_call_from_any_position(client: NodeClient) -> None:
    state = await client.start_function("print_lines", {"count": 4, "delay_s": 0.2}, timeout=0)
    events = [event async for event in follow(client, state.fnc_id, 0, 20, options=WAIT_1_S)]
    assert stdout_of(events) == LINES
    # the daemon's positions count its log's bytes: a record is 5 bytes and the text
    after_first = 5 + len("line 0\n")
    rest = [event async for event in follow(client, state.fnc_id, from_=after_first, timeout=5)]
    assert stdout_of(rest) == LINES[len("line 0\n") :]
    assert await wait_for_call(client, state.fnc_id, timeout=5) == 4


async def test_follow_raises_call_timeout_at_its_deadline(client: NodeClient) -> None:
    state = await client.start_function("sleep", {"seconds": 30}, timeout=0)
    with pytest.raises(CallTimeout):
        async for _ in follow(client, state.fnc_id, 0, 0.5, options=CallOptions(wait_s=0.2)):
            pass
    await client.abort_function(state.fnc_id)


async def test_a_lost_answer_is_asked_again_from_the_same_position(node: LocalNode) -> None:
    proxy = LossyProxy(node.port, "WaitForFunction", drops=2)
    events: list[OutputEvent] = []
    async with fake_node(proxy) as port, NodeClient("127.0.0.1", port) as client:
        result = await call_function(
            client, "print_lines", {"count": 4, "delay_s": 0.2}, timeout=30,
            on_output=events.append,
        )  # fmt: skip
    assert result == 4 and proxy.dropped == 2
    assert stdout_of(events) == LINES  # nothing shown twice, nothing missed


async def test_call_many_tags_each_event_with_its_node(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    one, two = await make_node("one"), await make_node("two")
    nodes = [Node(name, n.host, n.port) for name, n in (("one", one), ("two", two))]
    events: list[OutputEvent] = []
    async with Cluster(nodes) as cluster:
        summary = await cluster.gather(
            "print_lines", {"count": 4}, timeout=20, on_output=events.append
        )
    assert summary.all_ok
    for name in ("one", "two"):
        assert stdout_of([e for e in events if e.node == name]) == LINES


async def test_the_blocking_api_follows_too(node: LocalNode) -> None:
    started = None
    async with node.client() as client:
        started = await client.start_function("print_lines", {"count": 4, "delay_s": 0.1},
                                              timeout=0)  # fmt: skip
    with blocking.Cluster([Node("n", node.host, node.port)]) as cluster:
        events = list(cluster.follow("n", started.fnc_id, timeout=20))
        collected: list[OutputEvent] = []
        cluster.call_function("n", "print_lines", {"count": 4}, timeout=20,
                              on_output=collected.append)  # fmt: skip
    assert stdout_of(events) == LINES
    assert stdout_of(collected) == LINES
