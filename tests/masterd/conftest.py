from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from noded.launcher import LocalNode
from tests.helpers import run_node

NodeFactory = Callable[..., Any]


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
