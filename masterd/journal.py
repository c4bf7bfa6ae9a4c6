"""Where a fan-out writes down what it asked of each node: one small interface, two homes.

:class:`Journal` is what :mod:`masterd.fanout`'s run tells as it goes; what it was told
before (a run that died) comes back as a :class:`~masterd.batch.Progress`.  The homes:

* :class:`FileJournal`: the JSON-lines batch file of ``call_many(batch_file=...)`` and
  ``rpc-cli gather --batch-file`` (:mod:`masterd.batch`);
* the store of ganeti-masterd, for its jobs (:mod:`masterd.jobs.journal`).

The one rule both keep: :meth:`Journal.asked` returns once the node's request_id is
written where a successor will read it (the batch file: in the kernel; the store:
committed), and only then is the StartFunction sent.  So a successor resends that
request_id and the node answers with the call it started, never a second one.
"""

from __future__ import annotations

from typing import Protocol

from masterd.batch import BatchFile
from masterd.call import new_request_id
from masterd.results import NodeResult


class Journal(Protocol):
    """The records of one fan-out run."""

    def request_id(self, node: str) -> str:
        """The idempotency key of ``node``'s start, if none was recorded before."""

    async def asked(self, node: str, request_id: str) -> None:
        """``node`` is about to be sent StartFunction with ``request_id``: write it down
        first (returns once a successor would read it)."""

    def started(self, node: str, fnc_id: str) -> None:
        """``node`` named its call (a successor waits for that fnc_id)."""

    def finished(self, result: NodeResult) -> None:
        """A call ended with ``result`` (a home may keep only the ends it trusts)."""

    def close(self) -> None:
        """Let go (a batch file's lock); nothing is lost by not calling it."""


class FileJournal:
    """The batch file as a :class:`Journal` (random request_ids, as ``call_many`` always
    made)."""

    def __init__(self, batch: BatchFile) -> None:
        self.batch = batch

    def request_id(self, node: str) -> str:
        return new_request_id()

    async def asked(self, node: str, request_id: str) -> None:
        self.batch.asked(node, request_id)

    def started(self, node: str, fnc_id: str) -> None:
        self.batch.started(node, fnc_id)

    def finished(self, result: NodeResult) -> None:
        self.batch.finished(result)

    def close(self) -> None:
        self.batch.close()
