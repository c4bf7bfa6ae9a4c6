"""``rpc-cli --master HOST:PORT job ...``: ganeti-masterd's jobs.

``job submit FN [ARGS_JSON]`` (``--names``/``--labels``, ``--timeout`` per node,
``--window``, ``--canary``, ``--max-failures``; ``--follow``), ``job list``, ``job show
ID``, ``job follow ID``, ``job abort ID [--calls]``.  Following prints one line per node
as its result arrives, then the count by outcome; the exit status is ``rpc-cli
gather``'s: 4 if a node was unreachable, else 1 if one failed, timed out or was skipped,
else 0 (3: the job has not ended).  Ctrl-C while following leaves the job running and
says how to follow or abort it (exit 130).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from masterd.cli.cells import cell
from masterd.cli.common import parse_fn_args, positive_seconds, print_json
from masterd.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NODE, EXIT_OK, EXIT_RUNNING
from masterd.job_state import JobResultItem, JobState
from masterd.master_client import MasterClient
from masterd.options import Rollout
from rpc_client.job_protocol import DEFAULT_JOB_TIMEOUT_S

#: the longest result or error shown on a node's line
_VALUE_CHARS = 200
_JOB_ID = "the job's id, as job submit or job list printed it"


def add_job_command(sub: Any) -> None:
    job = sub.add_parser("job", help="ganeti-masterd's jobs (needs --master): submit, list, "
                         "show, follow, abort")  # fmt: skip
    jobs = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    submit = jobs.add_parser("submit", help="SubmitJob: run a function on nodes, from the master")
    submit.add_argument("fn_name", metavar="FN", help="the function each node runs")
    submit.add_argument("fn_args", nargs="?", default="{}", metavar="ARGS_JSON",
                        help="its named arguments as a JSON object (default {})")  # fmt: skip
    submit.add_argument("--names", type=_names, default=None, metavar="A,B",
                        help="these nodes, by name (with --labels: those of them carrying "
                             "the labels)")  # fmt: skip
    submit.add_argument(
        "--labels",
        type=_names,
        default=None,
        metavar="a,b",
        help="the nodes carrying all of these labels (default: every node)",
    )
    submit.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_JOB_TIMEOUT_S,
        help="per node, from its start (default %(default)s s)",
    )
    submit.add_argument("--abort-after", type=positive_seconds, default=None, metavar="S",
                        help="each node kills its call this long after it started "
                             "(default: none)")  # fmt: skip
    submit.add_argument("--window", type=_count(1), default=None, metavar="N",
                        help="at most N nodes running at once, the next as soon as one "
                             "ends (default: all at once)")  # fmt: skip
    submit.add_argument("--canary", type=_count(0), default=0, metavar="N",
                        help="the first N nodes alone; the rest only if all of them "
                             "succeed (default %(default)s)")  # fmt: skip
    submit.add_argument("--max-failures", type=_count(0), default=None, metavar="N",
                        help="start no further node once more than N have failed "
                             "(default: no limit)")  # fmt: skip
    submit.add_argument(
        "--request-id",
        default=None,
        metavar="KEY",
        help="an idempotency key: the same key answers the same job",
    )
    submit.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="print each node's result as it comes, until the job ends",
    )
    listing = jobs.add_parser("list", help="ListJobs: the newest jobs, one line each")
    listing.add_argument("--limit", type=_count(1), default=None, metavar="N",
                         help="the newest N jobs (default: the master's, 100)")  # fmt: skip
    for name, text in (
        ("show", "the job's state and every result, as JSON"),
        ("follow", "each node's result as it comes, until the job ends"),
    ):
        jobs.add_parser(name, help=text).add_argument("job_id", metavar="ID", help=_JOB_ID)
    abort = jobs.add_parser("abort", help="AbortJob: start no further node (--calls: and "
                            "abort the running calls)")  # fmt: skip
    abort.add_argument("job_id", metavar="ID", help=_JOB_ID)
    abort.add_argument("--calls", action="store_true", help="abort the running calls too")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: give an integer >= {minimum}")
        return int(text)

    return parse


async def cmd_job(master: MasterClient, args: argparse.Namespace) -> int:
    """The ``job`` command's actions."""
    action = args.job_command
    if action == "submit":
        state = await master.submit_job(
            args.fn_name, parse_fn_args(args.fn_args), nodes=args.names, labels=args.labels,
            timeout=args.timeout, abort_after=args.abort_after, request_id=args.request_id,
            rollout=Rollout(window=args.window, canary=args.canary,
                            max_failures=args.max_failures),
        )  # fmt: skip
        if not args.follow:
            print_json(state.to_wire())
            return EXIT_OK
        print(f"job {state.job_id}: {state.fn_name}", file=sys.stderr)
        return await _follow(master, args, state.job_id)
    if action == "list":
        jobs = await master.jobs(args.limit)
        if jobs:
            print(format_jobs(jobs))
        return EXIT_OK
    if action == "show":
        return await _show(master, args.job_id)
    if action == "follow":
        return await _follow(master, args, args.job_id)
    return _aborted(await master.abort_job(args.job_id, calls=args.calls))


def _aborted(state: JobState) -> int:
    """``job abort``'s answer printed; exit 0 only if the job now is aborted."""
    print_json(state.to_wire())
    if state.state == "aborted":
        return EXIT_OK
    if state.ended:
        print(f"rpc-cli: job {state.job_id} had {state.state} already: nothing was aborted",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    print(f"rpc-cli: job {state.job_id} is still {state.state}: its abort is recorded, it "
          "ends once its running calls do", file=sys.stderr)  # fmt: skip
    return EXIT_RUNNING


async def _show(master: MasterClient, job_id: str) -> int:
    state = await master.wait_job(job_id, results_from=0)
    items, position = list(state.results), state.results_next or 0
    while state.results:  # the rest, page by page
        state = await master.wait_job(job_id, results_from=position)
        items += state.results
        position = state.results_next or position
    body = state.to_wire()
    body["results"] = [item.to_wire() for item in items]
    print_json(body)
    return exit_status(state) if state.ended else EXIT_RUNNING


async def _follow(master: MasterClient, args: argparse.Namespace, job_id: str) -> int:
    try:
        async for item in master.follow_job(job_id):
            print(format_result(item))
            sys.stdout.flush()  # a line as it comes, also into a pipe
    except asyncio.CancelledError:  # Ctrl-C: the job goes on in the master
        where = f"rpc-cli --master {args.master}"
        print(f"rpc-cli: job {job_id} goes on in the master: follow it with `{where} job "
              f"follow {job_id}`, abort it with `{where} job abort {job_id} [--calls]`",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    state = await master.wait_job(job_id)
    print(format_counts(state), file=sys.stderr)
    return exit_status(state)


def exit_status(state: JobState) -> int:
    """``rpc-cli gather``'s exit status, from a job's counts."""
    counts = state.counts
    if counts["unreachable"]:
        return EXIT_NODE
    if counts["failed"] or counts["timed_out"] or counts["skipped"]:
        return EXIT_FAILED
    return EXIT_OK


def format_result(item: JobResultItem) -> str:
    """``node  outcome  fnc_id  result`` (or the error's type and message)."""
    if item.error is not None:
        shown = f"{item.error.get('type')}: {item.error.get('message', '')}"
    else:
        shown = orjson.dumps(item.result).decode()
    shown = cell(shown)
    if len(shown) > _VALUE_CHARS:
        shown = shown[: _VALUE_CHARS - 3] + "..."
    return "  ".join(map(cell, (item.node, item.outcome, item.fnc_id or "-", shown)))


def format_jobs(jobs: list[JobState]) -> str:
    """A table under a header: job id, function, state, submitted (UTC), counts."""
    rows: list[tuple[str, ...]] = [("JOB", "FUNCTION", "STATE", "SUBMITTED (UTC)", "NODES")]
    for state in jobs:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.submitted))
        rows.append(tuple(map(cell, (state.job_id, state.fn_name, state.state, stamp,
                                     format_counts(state)))))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    widths[-1] = 0  # the last column: no trailing spaces
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
                     for row in rows)  # fmt: skip


def format_counts(state: JobState) -> str:
    counts = ", ".join(f"{count} {name.replace('_', ' ')}"
                       for name, count in state.counts.items() if count)  # fmt: skip
    total = sum(state.counts.values())
    return f"{total} node{'' if total == 1 else 's'}" + (f": {counts}" if counts else "")
