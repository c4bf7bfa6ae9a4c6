"""Jobs in the PostgreSQL store: the job methods of
:class:`~masterd.store.postgres.PostgresStore`, the SQLite store's
(:mod:`masterd.store.sqlite_jobs`) in PostgreSQL's words.

What differs with several masters on one database:

- ``add_job`` inserts with ``ON CONFLICT (request_id) DO NOTHING``: of two masters
  submitting one ``request_id`` at once, one makes the job and the other answers it.
- ``claim_jobs`` takes the unfinished jobs whose owner is this masterd, none, or a
  masterd whose row in ``instances`` lapsed (:data:`OWNER_LAPSE_S`, by the database's
  clock) — one conditional UPDATE, so a job never gets two owners.
- ``record_asked`` (written before a node's StartFunction is sent) checks, in its own
  transaction, that this masterd still owns the job and its row has not lapsed: a
  master paused past the lapse (whose jobs another may have taken) starts no further
  node, whatever its clock says — a fencing token, not a clock hope.  It is refused as
  :class:`~masterd.store.jobs.JobNotHeld` (a 503 ``StoreUnavailable``): the run stops
  there (``job.not_held``), and goes on at the next claim if the job is still its own.
  Every other record of a job (a node's fnc_id, its end, the job's state) is fenced the
  same way (:meth:`PostgresJobs._fenced`, the job's row locked ``FOR SHARE`` until the
  commit, so a claim waits for it): a paused owner that lost its job records nothing.

Per-node records share commits as in the SQLite store (group commit).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from masterd.store.group_commit import GroupCommit
from masterd.store.jobs import (
    ABORT_NOTICE,
    JobHead,
    JobNode,
    JobNotHeld,
    JobProgress,
    JobRecord,
    JobResult,
    JobSpec,
    NewResult,
)
from masterd.store.postgres_sql import JOBS_CHANNEL, NOW
from rpc_client.protocol import dumps, loads

T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Awaitable[T]]

#: a job whose owner has not renewed its row for this long is taken by the next claim
OWNER_LAPSE_S = 15.0

_JOB_COLUMNS = ('id, request_id, request, fn_name, fn_args, timeout, abort_after, "window", '
                "canary, max_failures, state, owner, abort, submitted, ended")  # fmt: skip
_HEAD_COLUMNS = "id, fn_name, state, owner, abort, submitted, ended"
_RESULT_COLUMNS = "seq, node, outcome, fnc_id, result, error"
_UNFINISHED = "state IN ('queued', 'running')"
#: what a fenced record's work answers when the job is not this masterd's
_NOT_HELD = object()
#: the jobs found held (and their rows locked ``FOR SHARE``) in the records' transaction
#: running now: one check a job a commit, not one a record
_HELD_IN_COMMIT: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "held_in_commit", default=None
)


class PostgresJobs:
    """The job methods of the :class:`~masterd.store.base.Store`, on PostgreSQL."""

    _job_commits: GroupCommit[Work[Any], Any] | None = None
    #: the masterd this store works for (the owner it claims jobs as)
    _owner: str | None = None
    owner_lapse_s = OWNER_LAPSE_S

    async def _run(self, work: Work[T]) -> T:
        raise NotImplementedError  # the store's pool, its errors mapped

    async def add_job(self, job: JobRecord) -> JobRecord:
        self._owner = self._owner or job.owner

        async def work(conn: asyncpg.Connection) -> JobRecord:
            async with conn.transaction():
                if await _insert_job(conn, job):
                    return job
                row = await conn.fetchrow(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE request_id = $1", job.request_id
                )
                return await _job_of(conn, row)

        return await self._run(work)

    async def get_job(self, job_id: str) -> JobRecord | None:
        async def work(conn: asyncpg.Connection) -> JobRecord | None:
            row = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
            return None if row is None else await _job_of(conn, row)

        return await self._run(work)

    async def get_job_head(self, job_id: str) -> JobHead | None:
        row = await self._run(lambda conn: conn.fetchrow(
            f"SELECT {_HEAD_COLUMNS} FROM jobs WHERE id = $1", job_id))  # fmt: skip
        return None if row is None else JobHead(**dict(row))

    async def list_jobs(self, limit: int) -> list[JobRecord]:
        async def work(conn: asyncpg.Connection) -> list[JobRecord]:
            rows = await conn.fetch(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY submitted DESC, "
                                    "id LIMIT $1", limit)  # fmt: skip
            return [await _job_of(conn, row) for row in rows]

        return await self._run(work)

    async def claim_jobs(self, owner: str) -> list[JobRecord]:
        self._owner = owner

        async def work(conn: asyncpg.Connection) -> list[JobRecord]:
            async with conn.transaction():
                await conn.execute(
                    f"UPDATE jobs SET owner = $1 WHERE {_UNFINISHED} AND (owner IS NULL OR "
                    "owner = $1 OR NOT EXISTS (SELECT 1 FROM instances WHERE instances.id "
                    f"= jobs.owner AND instances.renewed >= {NOW} - $2))",
                    owner, self.owner_lapse_s,
                )  # fmt: skip
                rows = await conn.fetch(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner = $1 "
                                        f"AND {_UNFINISHED} ORDER BY submitted", owner)  # fmt: skip
                return [await _job_of(conn, row) for row in rows]

        return await self._run(work)

    async def set_job_state(self, job_id: str, state: str, at: float | None = None) -> None:
        ended = at if state != "running" else None
        await self._fenced(job_id, lambda conn: conn.execute(
            "WITH changed AS (UPDATE jobs SET state = $1, ended = $2 WHERE id = $3 RETURNING id) "
            "SELECT pg_notify($4, id) FROM changed",
            state, ended, job_id, JOBS_CHANNEL))  # fmt: skip

    async def abort_job(self, job_id: str, calls: bool) -> None:
        """The abort, and at its commit a notice to every master (the owner acts on it)."""
        await self._run(lambda conn: conn.execute(
            "WITH changed AS (UPDATE jobs SET abort = CASE WHEN abort = 'calls' THEN abort "
            "ELSE $1 END WHERE id = $2 RETURNING id) SELECT pg_notify($3, $4 || id) FROM changed",
            "calls" if calls else "nodes", job_id, JOBS_CHANNEL, ABORT_NOTICE))  # fmt: skip

    async def job_progress(self, job_id: str) -> JobProgress:
        async def work(conn: asyncpg.Connection) -> JobProgress:
            progress = JobProgress()
            rows = await conn.fetch(
                "SELECT node, request_id, asked, fnc_id FROM job_nodes WHERE job_id = $1", job_id
            )
            for node, request_id, asked, fnc_id in rows:
                if request_id is not None:
                    progress.request_ids[node] = request_id
                    progress.asked[node] = asked
                if fnc_id is not None:
                    progress.fnc_ids[node] = fnc_id
            progress.results = {r.node: r for r in await _results(conn, job_id, 0, None)}
            return progress

        return await self._run(work)

    async def job_results(self, job_id: str, from_seq: int, limit: int) -> list[JobResult]:
        return await self._run(lambda conn: _results(conn, job_id, from_seq, limit))

    async def job_counts(self, job_id: str) -> dict[str, int]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT coalesce(outcome, CASE WHEN request_id IS NULL THEN 'pending' "
            "ELSE 'running' END), count(*) FROM job_nodes WHERE job_id = $1 GROUP BY 1",
            job_id))  # fmt: skip
        return {row[0]: row[1] for row in rows}

    async def record_asked(self, job_id: str, node: str, request_id: str, at: float) -> None:
        status = await self._job_record(lambda conn: conn.execute(
            "UPDATE job_nodes SET request_id = $1, asked = coalesce(asked, $2) WHERE job_id = $3 "
            "AND node = $4 "
            "AND EXISTS (SELECT 1 FROM jobs WHERE id = $3 AND owner = $5) AND NOT EXISTS "
            f"(SELECT 1 FROM instances WHERE id = $5 AND renewed < {NOW} - $6)",
            request_id, at, job_id, node, self._owner, self.owner_lapse_s))  # fmt: skip
        if status != "UPDATE 1":
            raise self._not_held(job_id)

    async def record_started(self, job_id: str, node: str, fnc_id: str) -> None:
        await self._fenced(job_id, lambda conn: conn.execute(
            "UPDATE job_nodes SET fnc_id = $1 WHERE job_id = $2 AND node = $3",
            fnc_id, job_id, node))  # fmt: skip

    async def record_result(self, job_id: str, result: NewResult) -> JobResult | None:
        answer: JobResult | None = await self._fenced(
            job_id, lambda conn: _insert_result(conn, job_id, result)
        )
        return answer

    async def expire_jobs(self, ended_before: float) -> int:
        status = await self._run(lambda conn: conn.execute(
            "DELETE FROM jobs WHERE ended IS NOT NULL AND ended < $1", ended_before))  # fmt: skip
        return int(status.split()[-1])

    # --- group commit -------------------------------------------------------------

    async def _fenced(self, job_id: str, work: Work[Any]) -> Any:
        """``work`` in the job records' next commit if this masterd still holds the job
        (its owner, its row not lapsed), checked in that same transaction with the job's
        row locked against a claim until the commit; :class:`JobNotHeld` if not (nothing
        written)."""
        owner, lapse_s = self._owner, self.owner_lapse_s

        async def held_work(conn: asyncpg.Connection) -> Any:
            checked = _HELD_IN_COMMIT.get()
            if checked is not None and job_id in checked:  # its row is locked till the commit
                return await work(conn)
            held = await conn.fetchval(
                "SELECT 1 FROM jobs WHERE id = $1 AND owner = $2 AND NOT EXISTS (SELECT 1 "
                f"FROM instances WHERE id = $2 AND renewed < {NOW} - $3) FOR SHARE OF jobs",
                job_id, owner, lapse_s,
            )  # fmt: skip
            if held is None:
                return _NOT_HELD
            if checked is not None:
                checked.add(job_id)
            return await work(conn)

        answer = await self._job_record(held_work)
        if answer is _NOT_HELD:
            raise self._not_held(job_id)
        return answer

    def _not_held(self, job_id: str) -> JobNotHeld:
        return JobNotHeld(
            f"job {job_id}: this masterd ({self._owner}) no longer holds it (its row "
            f"lapsed past {self.owner_lapse_s:g} s, and another master may have taken "
            "the job): no further node is started, and nothing more recorded, here",
            retry_after_s=1,
        )

    async def _job_record(self, work: Work[T]) -> T:
        if self._job_commits is None:
            self._job_commits = GroupCommit(self._apply_records, "store-job-records")
        answer: T = await self._job_commits.add(work)
        return answer

    async def _apply_records(self, batch: list[Work[Any]]) -> list[Any]:
        return await self._run(functools.partial(_apply, batch=batch))


async def _apply(conn: asyncpg.Connection, *, batch: list[Work[Any]]) -> list[Any]:
    checked = _HELD_IN_COMMIT.set(set())
    try:
        async with conn.transaction():
            return [await work(conn) for work in batch]
    finally:
        _HELD_IN_COMMIT.reset(checked)


async def _insert_job(conn: asyncpg.Connection, job: JobRecord) -> bool:
    """Insert the job and its nodes; False if its request_id is taken."""
    spec = job.spec
    inserted = await conn.fetchval(
        f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
        "$11, $12, $13, $14, $15) ON CONFLICT (request_id) DO NOTHING RETURNING id",
        job.id, job.request_id, dumps(job.request).decode(), spec.fn_name,
        dumps(spec.fn_args).decode(), spec.timeout_s, spec.abort_after, spec.window,
        spec.canary, spec.max_failures, job.state, job.owner, job.abort, job.submitted,
        job.ended,
    )  # fmt: skip
    if inserted is None:
        return False
    await conn.executemany(
        "INSERT INTO job_nodes (job_id, position, node, address, port) VALUES ($1, $2, $3, $4, $5)",
        [(job.id, index, n.name, n.address, n.port) for index, n in enumerate(spec.nodes)],
    )
    return True


async def _job_of(conn: asyncpg.Connection, row: Any) -> JobRecord:
    nodes = await conn.fetch("SELECT node, address, port FROM job_nodes WHERE job_id = $1 "
                             "ORDER BY position", row[0])  # fmt: skip
    spec = JobSpec(fn_name=row[3], fn_args=loads(row[4]),
                   nodes=tuple(JobNode(*node) for node in nodes), timeout_s=row[5],
                   abort_after=row[6], window=row[7], canary=row[8],
                   max_failures=row[9])  # fmt: skip
    return JobRecord(id=row[0], spec=spec, request=loads(row[2]), request_id=row[1],
                     state=row[10], owner=row[11], abort=row[12], submitted=row[13],
                     ended=row[14])  # fmt: skip


async def _results(
    conn: asyncpg.Connection, job_id: str, from_seq: int, limit: int | None
) -> list[JobResult]:
    rows = await conn.fetch(f"SELECT {_RESULT_COLUMNS} FROM job_nodes WHERE job_id = $1 AND "
                            "seq >= $2 ORDER BY seq LIMIT $3", job_id, from_seq, limit)  # fmt: skip
    return [JobResult(row[0], row[1], row[2], row[3],
                      None if row[4] is None else loads(row[4]),
                      None if row[5] is None else loads(row[5])) for row in rows]  # fmt: skip


async def _insert_result(conn: asyncpg.Connection, job_id: str, new: NewResult) -> JobResult | None:
    """A node's end, at the next position; None if it had one already (kept).  One
    statement: the check, the position and the write."""
    seq = await conn.fetchval(
        "WITH ended AS (UPDATE job_nodes SET seq = (SELECT coalesce(max(seq) + 1, 0) "
        "FROM job_nodes WHERE job_id = $1), outcome = $2, fnc_id = coalesce($3, fnc_id), "
        "result = $4, error = $5 WHERE job_id = $1 AND node = $6 AND outcome IS NULL "
        "RETURNING seq) SELECT seq, pg_notify($7, $1) FROM ended",
        job_id, new.outcome, new.fnc_id, dumps(new.result).decode(),
        None if new.error is None else dumps(new.error).decode(), new.node, JOBS_CHANNEL,
    )  # fmt: skip
    if seq is None:
        return None
    return JobResult(seq, new.node, new.outcome, new.fnc_id, new.result, new.error)
