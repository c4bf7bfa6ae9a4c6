"""A master cut off from a node by a real network partition (namespace + veth pair).

The node's daemon runs in a network namespace made here; the link is taken down with
``ip link set ... down``.  Skipped, saying why, where namespaces cannot be made.
Addresses: a link-local /30 that exists only on this test's veth pair.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from masterd.call import call_function
from masterd.local import LocalNode
from masterd.options import CallOptions
from rpc_client.client import NodeClient
from rpc_client.errors import CallTimeout, ConnectionLost, NodeTimeout, NodeUnreachable
from tests.helpers import eventually, node_args, node_env

SUBNET_PREFIX = "169.254.181."
MASTER_ADDRESS, NODE_ADDRESS = SUBNET_PREFIX + "1", SUBNET_PREFIX + "2"


@dataclass
class Partitionable:
    namespace: str
    master_if: str
    node_if: str

    def ip(self, *args: str, inside: bool = False) -> None:
        prefix = ["ip", "netns", "exec", self.namespace] if inside else []
        subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=10)

    def cut(self) -> None:
        self.ip("link", "set", self.node_if, "down", inside=True)

    def heal(self) -> None:
        self.ip("link", "set", self.node_if, "up", inside=True)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    if SUBNET_PREFIX in addresses:
        return f"{SUBNET_PREFIX}0/30 is already in use on this machine"
    return None


@pytest.fixture
def link() -> Iterator[Partitionable]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    tag = f"{os.getpid() % 100000}"
    net = Partitionable(f"noded-test-{tag}", f"ndm{tag}", f"ndn{tag}")
    made = subprocess.run(["ip", "netns", "add", net.namespace], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this test may not create network namespaces: {made.stderr.strip()}")
    try:
        net.ip("link", "add", net.master_if, "type", "veth", "peer", "name", net.node_if)
        net.ip("link", "set", net.node_if, "netns", net.namespace)
        net.ip("addr", "add", f"{MASTER_ADDRESS}/30", "dev", net.master_if)
        net.ip("link", "set", net.master_if, "up")
        net.ip("addr", "add", f"{NODE_ADDRESS}/30", "dev", net.node_if, inside=True)
        net.ip("link", "set", net.node_if, "up", inside=True)
        net.ip("link", "set", "lo", "up", inside=True)
        yield net
    finally:
        subprocess.run(["ip", "link", "del", net.master_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", net.namespace], capture_output=True, timeout=10)


@pytest.fixture
async def remote(link: Partitionable, tmp_path: Path) -> AsyncIterator[LocalNode]:
    """A daemon inside the namespace, reachable only over the veth pair."""
    async with LocalNode.running(
        node_args(["--insecure"]),
        host=NODE_ADDRESS,
        env=node_env({"TEST_NAME": "remote", "TEST_DELAY_S": "2"}),
        workdir=tmp_path / "remote",
        prefix=["ip", "netns", "exec", link.namespace],
    ) as daemon:
        yield daemon


async def cut_mid_call(
    link: Partitionable, client: NodeClient, runs: Path, timeout: float
) -> asyncio.Task[str]:
    """Start a call of ``node_behaviour`` and cut the link once the function runs."""
    call = asyncio.create_task(
        call_function(client, "node_behaviour", {"count_path": str(runs)}, timeout=timeout,
                      options=CallOptions(wait_s=0.5))
    )  # fmt: skip
    await eventually(runs.exists)
    link.cut()
    return call


async def test_a_partition_fails_the_call_within_its_deadline(
    link: Partitionable, remote: LocalNode, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with NodeClient(NODE_ADDRESS, remote.port) as client:
        assert (await client.identify())["pid"] == remote.pid
        began = time.monotonic()
        call = await cut_mid_call(link, client, runs, timeout=3)
        try:
            with pytest.raises((NodeTimeout, NodeUnreachable, ConnectionLost, CallTimeout)):
                await asyncio.wait_for(call, 10)
            assert time.monotonic() - began < 3 + 1.5
        finally:
            link.heal()


async def test_a_partition_that_heals_before_the_deadline_runs_the_function_once(
    link: Partitionable, remote: LocalNode, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with NodeClient(NODE_ADDRESS, remote.port) as client:
        call = await cut_mid_call(link, client, runs, timeout=20)
        await asyncio.sleep(1.5)  # how long the partition lasts (not a wait for an event)
        link.heal()
        assert await asyncio.wait_for(call, 25) == "remote"
    assert runs.read_text() == "remote\n"
