"""A fan-out to hundreds of nodes over mutual TLS with real certificates: no node
starves, and a cluster's second call reuses the connections of its first."""

from __future__ import annotations

from pathlib import Path

import pytest

from masterd.cluster import Cluster
from masterd.node import Node
from rpc_client.client import ClientTimeouts
from tests.bench.fleet import _pki, fake_fleet

NODES = 300


@pytest.mark.slow
async def test_every_node_of_a_tls_fleet_answers_and_the_second_call_reuses_connections(
    tmp_path: Path,
) -> None:
    tls_dir, tls = _pki(tmp_path)
    # a tight connect bound, counted from each node's turn (the turns themselves are
    # tested in tests/rpc_client/test_transport.py)
    timeouts = ClientTimeouts(connect_s=1.0)
    async with fake_fleet(NODES, 0, tls_dir) as fleet:
        nodes = [Node(f"n{i}", "127.0.0.1", port, tls=tls)
                 for i, port in enumerate(fleet["answering"])]  # fmt: skip
        async with Cluster(nodes, timeouts=timeouts, max_handshakes=8) as cluster:
            first = await cluster.gather("echo", {"value": 1}, timeout=30)
            assert first.all_ok, first.line()
            assert cluster.open_connections == NODES
            second = await cluster.gather("echo", {"value": 2}, timeout=30)
            assert second.all_ok, second.line()
            assert cluster.open_connections == NODES  # not one new handshake
        assert cluster.open_connections == 0
