"""The group commit both stores use (masterd/store/group_commit.py): what comes while a
commit runs shares the next one; a failed batch fails each of its callers, and the next
batch goes on."""

from __future__ import annotations

import asyncio

import pytest

from masterd.store.group_commit import GroupCommit
from rpc_client.errors import StoreUnavailable


class _Store:
    """Commits batches of ints (each answered doubled), slowly; fails those with a 13."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def commit(self, batch: list[int]) -> list[int]:
        self.batches.append(batch)
        await asyncio.sleep(0.05)
        if 13 in batch:
            raise StoreUnavailable("the store failed", retry_after_s=1)
        return [item * 2 for item in batch]


async def test_what_comes_during_a_commit_shares_the_next_one() -> None:
    store = _Store()
    commits: GroupCommit[int, int] = GroupCommit(store.commit, "test-commits")
    first = asyncio.create_task(commits.add(1))
    await asyncio.sleep(0.01)  # its commit runs
    later = await asyncio.gather(*(commits.add(n) for n in (2, 3, 4)))
    assert (await first, later) == (2, [4, 6, 8])
    assert store.batches == [[1], [2, 3, 4]]


async def test_a_failed_batch_fails_each_caller_and_the_next_goes_on() -> None:
    store = _Store()
    commits: GroupCommit[int, int] = GroupCommit(store.commit, "test-commits")
    failed = await asyncio.gather(commits.add(12), commits.add(13), return_exceptions=True)
    assert [type(answer) for answer in failed] == [StoreUnavailable, StoreUnavailable]
    assert await commits.add(5) == 10
    with pytest.raises(StoreUnavailable):
        await commits.add(13)
