"""Jobs in the SQLite store: the SQL of :class:`SQLiteJobs`, a part of
:class:`~masterd.store.sqlite.SQLiteStore`.

The per-node records (a node asked, its call named, its end) of all running jobs go
through one queue: those that come while a commit runs are written together in the next
transaction, one fsync for all (group commit, as Reports are).  A record a guarantee
rests on (a node asked, before its StartFunction is sent; a node's end) is awaited until
committed; an fnc_id is only a shortcut for a successor and is written in the same way
without anyone waiting on it.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from masterd.store.group_commit import GroupCommit
from masterd.store.jobs import (
    JobHead,
    JobNode,
    JobProgress,
    JobRecord,
    JobResult,
    JobSpec,
    NewResult,
)
from rpc_client.protocol import dumps, loads

T = TypeVar("T")

_JOB_COLUMNS = ("id, request_id, request, fn_name, fn_args, timeout, abort_after, window, "
                "canary, max_failures, state, owner, abort, submitted, ended")  # fmt: skip
_HEAD_COLUMNS = "id, fn_name, state, owner, abort, submitted, ended"
_RESULT_COLUMNS = "seq, node, outcome, fnc_id, result, error"


#: a per-node record, written in the next group commit
_Work = Callable[[sqlite3.Connection], Any]


class SQLiteJobs:
    """The job methods of the :class:`~masterd.store.base.Store`, on SQLite."""

    _job_commits: GroupCommit[_Work, Any] | None = None

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # the store's writer thread

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # the store's reader thread

    async def add_job(self, job: JobRecord) -> JobRecord:
        def work(db: sqlite3.Connection) -> JobRecord:
            with transaction(db):
                if job.request_id is not None:
                    row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE request_id = ?",
                                     (job.request_id,)).fetchone()  # fmt: skip
                    if row is not None:
                        return _job_of(db, row)
                _insert_job(db, job)
                return job

        return await self._write(work)

    async def get_job(self, job_id: str) -> JobRecord | None:
        def work(db: sqlite3.Connection) -> JobRecord | None:
            row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                             (job_id,)).fetchone()  # fmt: skip
            return None if row is None else _job_of(db, row)

        return await self._read(work)

    async def get_job_head(self, job_id: str) -> JobHead | None:
        row = await self._read(lambda db: db.execute(
            f"SELECT {_HEAD_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone())  # fmt: skip
        return None if row is None else _head_of(row)

    async def list_jobs(self, limit: int) -> list[JobRecord]:
        def work(db: sqlite3.Connection) -> list[JobRecord]:
            rows = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY submitted DESC, id "
                              "LIMIT ?", (limit,)).fetchall()  # fmt: skip
            return [_job_of(db, row) for row in rows]

        return await self._read(work)

    async def claim_jobs(self, owner: str) -> list[JobRecord]:
        def work(db: sqlite3.Connection) -> list[JobRecord]:
            with transaction(db):
                db.execute("UPDATE jobs SET owner = ? WHERE state IN ('queued', 'running')",
                           (owner,))  # fmt: skip
                rows = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner = ? AND state "
                                  "IN ('queued', 'running') ORDER BY submitted",
                                  (owner,)).fetchall()  # fmt: skip
                return [_job_of(db, row) for row in rows]

        return await self._write(work)

    async def set_job_state(self, job_id: str, state: str, at: float | None = None) -> None:
        def work(db: sqlite3.Connection) -> None:
            ended = at if state != "running" else None
            db.execute("UPDATE jobs SET state = ?, ended = ? WHERE id = ?",
                       (state, ended, job_id))  # fmt: skip

        await self._job_record(work)

    async def abort_job(self, job_id: str, calls: bool) -> None:
        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.execute("UPDATE jobs SET abort = CASE WHEN abort = 'calls' THEN abort "
                           "ELSE ? END WHERE id = ?",
                           ("calls" if calls else "nodes", job_id))  # fmt: skip

        await self._write(work)

    async def job_progress(self, job_id: str) -> JobProgress:
        def work(db: sqlite3.Connection) -> JobProgress:
            progress = JobProgress()
            rows = db.execute("SELECT node, request_id, asked, fnc_id FROM job_nodes "
                              "WHERE job_id = ?", (job_id,))  # fmt: skip
            for node, request_id, asked, fnc_id in rows:
                if request_id is not None:
                    progress.request_ids[node] = request_id
                    progress.asked[node] = asked
                if fnc_id is not None:
                    progress.fnc_ids[node] = fnc_id
            progress.results = {r.node: r for r in _results(db, job_id, 0, -1)}
            return progress

        return await self._read(work)

    async def job_results(self, job_id: str, from_seq: int, limit: int) -> list[JobResult]:
        return await self._read(lambda db: _results(db, job_id, from_seq, limit))

    async def job_counts(self, job_id: str) -> dict[str, int]:
        def work(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute(
                "SELECT coalesce(outcome, CASE WHEN request_id IS NULL THEN 'pending' "
                "ELSE 'running' END), count(*) FROM job_nodes WHERE job_id = ? GROUP BY 1",
                (job_id,),
            )
            return dict(rows.fetchall())

        return await self._read(work)

    async def record_asked(self, job_id: str, node: str, request_id: str, at: float) -> None:
        await self._job_record(lambda db: db.execute(
            "UPDATE job_nodes SET request_id = ?, asked = coalesce(asked, ?) WHERE job_id = ? "
            "AND node = ?",
            (request_id, at, job_id, node)))  # fmt: skip

    async def record_started(self, job_id: str, node: str, fnc_id: str) -> None:
        await self._job_record(lambda db: db.execute(
            "UPDATE job_nodes SET fnc_id = ? WHERE job_id = ? AND node = ?",
            (fnc_id, job_id, node)))  # fmt: skip

    async def record_result(self, job_id: str, result: NewResult) -> JobResult | None:
        return await self._job_record(lambda db: _insert_result(db, job_id, result))

    async def expire_jobs(self, ended_before: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            with transaction(db):
                return db.execute("DELETE FROM jobs WHERE ended IS NOT NULL AND ended < ?",
                                  (ended_before,)).rowcount  # fmt: skip

        return await self._write(work)

    # --- group commit -------------------------------------------------------------

    async def _job_record(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._job_commits is None:
            self._job_commits = GroupCommit(self._apply_records, "store-job-records")
        answer: T = await self._job_commits.add(work)
        return answer

    async def _apply_records(self, batch: list[_Work]) -> list[Any]:
        return await self._write(functools.partial(_apply, batch=batch))


def _apply(db: sqlite3.Connection, *, batch: list[_Work]) -> list[Any]:
    with transaction(db):
        return [work(db) for work in batch]


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, committed (and, with synchronous=FULL, fsynced) on leaving;
    rolled back if anything raised, so the next write never finds one left open (the
    store's and its jobs')."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:  # whatever raised (an int too large to bind is OverflowError)
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _insert_job(db: sqlite3.Connection, job: JobRecord) -> None:
    spec = job.spec
    db.execute(
        f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (job.id, job.request_id, dumps(job.request).decode(), spec.fn_name,
         dumps(spec.fn_args).decode(), spec.timeout_s, spec.abort_after, spec.window,
         spec.canary, spec.max_failures, job.state, job.owner, job.abort, job.submitted,
         job.ended),
    )  # fmt: skip
    db.executemany(
        "INSERT INTO job_nodes (job_id, position, node, address, port) VALUES (?, ?, ?, ?, ?)",
        [(job.id, index, n.name, n.address, n.port) for index, n in enumerate(spec.nodes)],
    )


def _job_of(db: sqlite3.Connection, row: tuple[Any, ...]) -> JobRecord:
    nodes = db.execute("SELECT node, address, port FROM job_nodes WHERE job_id = ? "
                       "ORDER BY position", (row[0],)).fetchall()  # fmt: skip
    spec = JobSpec(fn_name=row[3], fn_args=loads(row[4]),
                   nodes=tuple(JobNode(*node) for node in nodes), timeout_s=row[5],
                   abort_after=row[6], window=row[7], canary=row[8],
                   max_failures=row[9])  # fmt: skip
    return JobRecord(id=row[0], spec=spec, request=loads(row[2]), request_id=row[1],
                     state=row[10], owner=row[11], abort=row[12], submitted=row[13],
                     ended=row[14])  # fmt: skip


def _head_of(row: tuple[Any, ...]) -> JobHead:
    return JobHead(id=row[0], fn_name=row[1], state=row[2], owner=row[3], abort=row[4],
                   submitted=row[5], ended=row[6])  # fmt: skip


def _results(db: sqlite3.Connection, job_id: str, from_seq: int, limit: int) -> list[JobResult]:
    rows = db.execute(f"SELECT {_RESULT_COLUMNS} FROM job_nodes WHERE job_id = ? AND seq >= ? "
                      "ORDER BY seq LIMIT ?", (job_id, from_seq, limit)).fetchall()  # fmt: skip
    return [JobResult(row[0], row[1], row[2], row[3],
                      None if row[4] is None else loads(row[4]),
                      None if row[5] is None else loads(row[5])) for row in rows]  # fmt: skip


def _insert_result(db: sqlite3.Connection, job_id: str, new: NewResult) -> JobResult | None:
    """A node's end, at the next position; None if it had one already (kept).  One
    statement: the check, the position and the write."""
    row = db.execute(
        "UPDATE job_nodes SET seq = (SELECT coalesce(max(seq) + 1, 0) FROM job_nodes "
        "WHERE job_id = ?), outcome = ?, fnc_id = coalesce(?, fnc_id), result = ?, error = ? "
        "WHERE job_id = ? AND node = ? AND outcome IS NULL RETURNING seq",
        (job_id, new.outcome, new.fnc_id, dumps(new.result).decode(),
         None if new.error is None else dumps(new.error).decode(), job_id, new.node),
    ).fetchone()  # fmt: skip
    if row is None:
        return None
    return JobResult(row[0], new.node, new.outcome, new.fnc_id, new.result, new.error)
