"""The job procedures of ganeti-masterd: parse, ask :class:`~masterd.jobs.service.Jobs`,
answer (their rows of ``masterd.daemon.handlers.PROCEDURES``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from masterd.daemon.keys import JOBS
from rpc_client import job_protocol as wire


async def submit_job(app: web.Application, body: dict[str, Any], caller: object) -> Any:
    return await app[JOBS].submit(wire.SubmitJobRequest.from_wire(body))


async def wait_for_job(app: web.Application, body: dict[str, Any], caller: object) -> Any:
    return await app[JOBS].wait(wire.WaitForJobRequest.from_wire(body))


async def abort_job(app: web.Application, body: dict[str, Any], caller: object) -> Any:
    return await app[JOBS].abort(wire.AbortJobRequest.from_wire(body))


async def list_jobs(app: web.Application, body: dict[str, Any], caller: object) -> Any:
    return await app[JOBS].list(wire.ListJobsRequest.from_wire(body))


JOB_PROCEDURES = {
    wire.SUBMIT_JOB: submit_job,
    wire.WAIT_FOR_JOB: wait_for_job,
    wire.ABORT_JOB: abort_job,
    wire.LIST_JOBS: list_jobs,
}
