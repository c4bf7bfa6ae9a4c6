"""WaitForJob on a job running here reads the job's own row and its new results, not the
whole job: no read of its nodes (``get_job``) nor a count over them (``job_counts``) an
answer, which made a followed job of N nodes cost O(N^2).  Its counts are kept by the run
as its records are committed, and agree with the store's."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from masterd.jobs.service import Jobs
from masterd.store.base import Store
from masterd.store.sqlite import SQLiteStore
from rpc_client.job_protocol import COUNTS, SubmitJobRequest, WaitForJobRequest

NODES = 5
ZERO = dict.fromkeys(COUNTS, 0)


class _Counted:
    """The store, its method calls counted by name."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self._store, name)


@contextlib.contextmanager
def _silent_nodes(count: int) -> Iterator[list[dict[str, Any]]]:
    """Nodes that accept a connection and never answer (their calls run to the timeout)."""
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=16))
                   for _ in range(count)]  # fmt: skip
        yield [{"name": f"s{i}", "address": "127.0.0.1", "port": s.getsockname()[1],
                "labels": []} for i, s in enumerate(servers)]  # fmt: skip


async def test_wait_for_job_reads_the_jobs_row_and_keeps_its_counts(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    await store.open()
    counted = _Counted(store)
    try:
        with _silent_nodes(NODES) as nodes:

            async def known() -> list[dict[str, Any]]:
                return nodes

            jobs = Jobs(cast(Store, counted), "m1", known_nodes=known, job_ttl_s=3600,
                        max_result_bytes=1 << 20, max_wait_s=30)  # fmt: skip
            job_id = (await jobs.submit(SubmitJobRequest.from_wire(
                {"fn_name": "echo", "timeout": 2, "window": 2})))["job_id"]  # fmt: skip
            wait = WaitForJobRequest.from_wire({"job_id": job_id, "timeout": 0,
                                                "results_from": 0})  # fmt: skip

            counted.calls.clear()
            end = time.monotonic() + 10
            while (await jobs.wait(wait))["counts"] != {**ZERO, "running": 2, "pending": 3}:
                assert time.monotonic() < end, "two nodes never seen running"
                await asyncio.sleep(0.02)
            assert counted.calls["get_job_head"] > 0
            assert counted.calls["get_job"] == counted.calls["job_counts"] == 0, counted.calls
            assert (await store.job_counts(job_id)) == {"running": 2, "pending": NODES - 2}
            await jobs.stop()
    finally:
        await store.close()
