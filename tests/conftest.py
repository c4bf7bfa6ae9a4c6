from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from masterd.local import LocalNode
from rpc_client.client import NodeClient
from tests.helpers import NodeFactory, marked_processes, node_args, node_env, run_node
from tests.pki import Pki, make_pki
from tests.postgres import PostgresServer, start_server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``both_spawners`` run against --spawn fork and --spawn exec."""
    if "spawn_method" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_spawners") is not None
        methods = ["fork", "exec"] if both else ["fork"]
        metafunc.parametrize("spawn_method", methods, scope="module")


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by fixture scope
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first (in their order): under pytest-xdist they start while
    the quick ones fill the other workers, instead of ending the run on one worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
async def node(spawn_method: str) -> AsyncIterator[LocalNode]:
    """A real ganeti-noded with the test functions, stopped after the test."""
    async with run_node(["--spawn", spawn_method]) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory, spawn_method: str) -> Iterator[LocalNode]:
    """One daemon for a whole test module, for tests that need no daemon of their own."""
    workdir = tmp_path_factory.mktemp("noded")
    args = node_args(["--spawn", spawn_method])
    daemon = asyncio.run(LocalNode.start(args, env=node_env(), workdir=workdir))
    yield daemon
    asyncio.run(daemon.stop())


@pytest.fixture
async def client(node: LocalNode) -> AsyncIterator[NodeClient]:
    async with node.client() as c:
        yield c


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """Start real daemons on demand: ``await make_node(name, delay_s=..., fail=...)``."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            name: str,
            *,
            host: str = "127.0.0.1",
            delay_s: float = 0,
            fail: bool = False,
            args: tuple[str, ...] = (),
        ) -> LocalNode:
            env = {"TEST_NAME": name, "TEST_DELAY_S": str(delay_s)}
            if fail:
                env["TEST_FAIL"] = "1"
            return await stack.enter_async_context(
                run_node(["--name", name, *args], host=host, env=env, workdir=tmp_path / name)
            )

        yield start


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A cluster CA (``pki.master(name)``, ``pki.node_args()``) and a foreign one."""
    return make_pki(tmp_path)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for this worker (skips, or fails under CI=true, without one);
    stopped by its data directory at the end."""
    server = start_server()
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new empty database on :func:`postgres_server`, for one test."""
    return postgres_server.create_database()


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """After the whole suite, no daemon or function process of it may still run."""
    yield
    deadline = time.monotonic() + 10
    while (left := marked_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind by the tests: {[p.pid for p in left]}"
