"""The node registry: nodes.toml, lookups, pooled clients, uuid checks."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from masterd.call import call_function, wait_for_call
from masterd.cluster import Cluster
from masterd.fanout import gather
from masterd.node import Node, load_nodes
from rpc_client.errors import UnknownNode, WrongNode
from tests.helpers import NodeFactory

NODES = """
[[node]]
name = "node1"
address = "127.0.0.1"
port = {port}
uuid = "{uuid}"

[[node]]
name = "node2"
address = "::1"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    return path


def test_load_nodes(tmp_path: Path) -> None:
    nodes = load_nodes(write(tmp_path, NODES.format(port=2000, uuid="u-1")))
    assert nodes == [Node("node1", "127.0.0.1", 2000, "u-1"), Node("node2", "::1", 1811, None)]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[[node]]\nname = 'a'\n", "'name' and 'address'"),
        ("[[node]]\nname = 'a'\naddress = 'x'\nport = 0\n", "'port' must be 1..65535"),
        ("[[node]]\nname = 'a'\naddress = 'x'\nfoo = 1\n", "unknown keys"),
        (
            "[[node]]\nname = 'a'\naddress = 'x'\n[[node]]\nname = 'a'\naddress = 'y'\n",
            "duplicate node names: a",
        ),
        ("name = ", "not TOML"),
        ("[other]\n", "no \\[\\[node\\]\\] entries"),
    ],
)
def test_bad_nodes_files_say_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        load_nodes(write(tmp_path, text))


def test_nodes_by_name_or_uuid() -> None:
    cluster = Cluster([Node("a", "127.0.0.1", uuid="u-a"), Node("b", "127.0.0.2")])
    assert cluster.node("a") is cluster.node("u-a")
    assert cluster.node("b").address == "127.0.0.2"
    with pytest.raises(UnknownNode, match="'c'"):
        cluster.node("c")
    assert isinstance(UnknownNode("x"), LookupError)


async def test_calls_by_name_pool_one_connection_per_node(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    daemon = await make_node("node1")
    async with daemon.client() as probe:
        uuid = (await probe.identify())["uuid"]
    path = write(tmp_path, NODES.format(port=daemon.port, uuid=uuid))
    async with Cluster.from_file(path) as cluster:
        for n in range(5):
            assert await cluster.call_function("node1", "echo", {"value": n}, timeout=10) == n
        assert cluster.client("node1") is cluster.client(cluster.node(uuid))
        established = [
            c
            for c in psutil.Process(daemon.pid).net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED
        ]
        assert len(established) == 1


async def test_a_node_whose_uuid_changed_is_wrong_node(make_node: NodeFactory) -> None:
    daemon = await make_node("node1")
    cluster = Cluster([Node("node1", "127.0.0.1", daemon.port, uuid="not-this-one")])
    async with cluster:
        with pytest.raises(WrongNode):
            await cluster.call_function("node1", "echo", {"value": 1}, timeout=5)
        summary = await cluster.gather("echo", {"value": 1}, timeout=5)
    assert summary.names("unreachable") == ["node1"]


async def test_a_node_passed_where_a_client_is_needed_says_what_to_pass(
    make_node: NodeFactory,
) -> None:
    """``call_function(cluster.node("n1"), ...)`` once died with AttributeError."""
    daemon = await make_node("n1")
    async with Cluster([Node("n1", "127.0.0.1", daemon.port)]) as cluster:
        node = cluster.node("n1")
        with pytest.raises(TypeError, match=r"got Node 'n1': .*cluster.client\(node\)"):
            await call_function(node, "echo", {"value": 1}, timeout=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"cluster.call_function\(node, ...\)"):
            await wait_for_call(node, "1:2:3.000000:0123456789abcdef", timeout=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected a NodeClient"):
            await gather([node], "echo", {"value": 1}, 5)  # type: ignore[list-item]
        assert await call_function(cluster.client(node), "echo", {"value": 2}, timeout=10) == 2
        assert await cluster.call_function(node, "echo", {"value": 3}, timeout=10) == 3
