"""Jobs against real processes: a ganeti-masterd and real ganeti-noded nodes registered
with it (by plain HTTP Register, with their real address and port)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from masterd.local import LocalNode
from tests.masterd.daemon.running import Masterd, registration


async def register(masterd: Masterd, node: LocalNode, name: str, labels: list[str]) -> None:
    await masterd.ok("Register", registration(name, address=node.host, port=node.port,
                                              labels=labels))  # fmt: skip


async def follow(masterd: Masterd, job_id: str, timeout_s: float = 30.0) -> tuple[dict, list]:
    """WaitForJob from results 0 until the job ends: its last state and every result."""
    position, items = 0, []
    end = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < end, f"job {job_id} did not end in {timeout_s} s"
        state = await masterd.ok("WaitForJob", {"job_id": job_id, "timeout": 5,
                                                "results_from": position})  # fmt: skip
        items += state["results"]["items"]
        position = state["results"]["next"]
        if state["state"] in ("finished", "aborted") and not state["results"]["items"]:
            return state, items


def runs(path: Path) -> Counter[str]:
    """How many times each node ran node_behaviour(count_path=path)."""
    return Counter(path.read_text().split()) if path.exists() else Counter()


def by_node(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = {item["node"]: item for item in items}
    assert len(result) == len(items), f"a node named twice: {items}"
    return result
