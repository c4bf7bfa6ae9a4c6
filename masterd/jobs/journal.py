"""The store as a fan-out's :class:`~masterd.journal.Journal`, for one job.

A node's request_id is made from the job and the node's place in it, and committed
before its StartFunction is sent (:meth:`StoreJournal.asked`, waiting through a store
outage); the fnc_id the node names is written without waiting (a resume that lacks it
resends the request_id and the node answers with the same call).  A node's end is
recorded by the job itself (:mod:`masterd.jobs.runner`), every end, a skipped node's too.

``NODED_TEST_JOB_PAUSE`` (``before_asked``, ``after_asked``, or ``before_end``) with
``NODED_TEST_JOB_PAUSE_FILE``: a test hook that makes a node's start stop, for good,
just before or just after its request_id is committed (or the job, once every node's
end is recorded and before its own), once the file is written, so that a test can
SIGKILL masterd there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from masterd.jobs.counts import JobCounts
from masterd.jobs.outage import StorePatience
from masterd.results import NodeResult
from masterd.store.base import Store
from masterd.store.jobs import JobNotHeld
from rpc_client.errors import RPCError
from rpc_client.logs import event

log = logging.getLogger("masterd.jobs")

PAUSE_ENV = "NODED_TEST_JOB_PAUSE"
PAUSE_FILE_ENV = "NODED_TEST_JOB_PAUSE_FILE"


def node_request_id(job_id: str, position: int) -> str:
    """The request_id of a job's node: the same in every run of the job."""
    return f"job.{job_id}.{position}"


class StoreJournal:
    """The records of one job's nodes in the store."""

    def __init__(
        self, store: Store, job_id: str, nodes: list[str], *, patience: StorePatience,
        on_not_held: Callable[[JobNotHeld], None], counts: JobCounts | None = None,
    ) -> None:  # fmt: skip
        self._store = store
        self.job_id = job_id
        self._patience = patience
        self._on_not_held = on_not_held
        self._counts = counts
        self._position = {name: index for index, name in enumerate(nodes)}
        self._writes: set[asyncio.Task[None]] = set()
        #: the nodes asked in this run, and their request_ids (what AbortJob may need)
        self.asked_ids: dict[str, str] = {}

    def request_id(self, node: str) -> str:
        return node_request_id(self.job_id, self._position[node])

    async def asked(self, node: str, request_id: str) -> None:
        """Returns once the start is committed (through a store outage, however long:
        :mod:`masterd.jobs.outage`); raises :class:`JobNotHeld`, after telling
        ``on_not_held``, if the job is no longer this masterd's."""
        await test_pause("before_asked")
        at = time.time()
        try:
            await self._patience.write("asked", lambda: self._store.record_asked(
                self.job_id, node, request_id, at))  # fmt: skip
        except JobNotHeld as exc:
            self._on_not_held(exc)
            raise
        self.asked_ids[node] = request_id
        if self._counts is not None:
            self._counts.asked(node)
        await test_pause("after_asked")

    def started(self, node: str, fnc_id: str) -> None:
        task = asyncio.create_task(self._started(node, fnc_id), name=f"record {node}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _started(self, node: str, fnc_id: str) -> None:
        try:
            await self._store.record_started(self.job_id, node, fnc_id)
        except JobNotHeld as exc:  # another master may own the job: this run ends
            self._on_not_held(exc)
        except RPCError as exc:  # only a shortcut for a resume: the request_id is there
            event(log, "job.record_failed", logging.WARNING, job_id=self.job_id, node=node,
                  error=str(exc))  # fmt: skip

    def finished(self, result: NodeResult) -> None:
        """Nothing here: the job records every node's end (masterd.jobs.runner)."""

    def close(self) -> None:
        """Nothing to let go: the store is the daemon's."""


async def test_pause(where: str) -> None:
    """The test hook of the module's docstring (nothing unless its variable says so)."""
    if os.environ.get(PAUSE_ENV) != where:
        return
    Path(os.environ[PAUSE_FILE_ENV]).write_text(f"{os.getpid()}\n")
    await asyncio.Event().wait()  # until the test kills this masterd
