"""Group commit: what comes while a commit runs is written together in the next one.

Both stores use it (Reports' events, and the per-node records of jobs): the first item
starts a task that commits whatever is waiting, then again whatever came meanwhile,
until nothing waits; one transaction, one fsync, for each batch.  Each caller awaits its
own item's answer; if a batch fails, each of its callers gets the store's error (nothing
of that batch was written: it was one transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class GroupCommit(Generic[Item, Answer]):
    """Batches of ``Item`` written by ``commit`` (one transaction a batch), which answers
    each item in order."""

    def __init__(self, commit: Callable[[list[Item]], Awaitable[list[Answer]]], name: str) -> None:
        self._commit = commit
        self._name = name
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: Item) -> Answer:
        """Returns once ``item`` is committed, with its answer; raises the store's error
        if its batch failed."""
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._task is None:
            self._task = asyncio.create_task(self._commit_waiting(), name=self._name)
        return await done

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    answers = await self._commit([item for item, _ in batch])
                except Exception as exc:  # each waiting caller gets the store's error
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, done), answer in zip(batch, answers, strict=True):
                    if not done.done():
                        done.set_result(answer)
        finally:
            self._task = None
