"""SubmitJob, WaitForJob, AbortJob, ListJobs on a real ganeti-masterd and real nodes."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import orjson

from masterd.local import free_port
from tests.helpers import NodeFactory
from tests.masterd.daemon.running import registration, run_masterd, until
from tests.masterd.jobs.fleet import by_node, follow, register, runs


async def test_a_job_runs_once_on_each_node_and_streams_their_results(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    count = tmp_path / "runs.txt"
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        for name in ("n1", "n2", "n3"):
            await register(masterd, await make_node(name), name, ["web"])
        state = await masterd.ok("SubmitJob", {"fn_name": "node_behaviour",
                                               "fn_args": {"count_path": str(count)},
                                               "labels": ["web"], "timeout": 10})  # fmt: skip
        assert state["owner"] and state["fn_name"] == "node_behaviour"
        final, items = await follow(masterd, state["job_id"])
    assert final["state"] == "finished"
    assert final["counts"]["ok"] == 3 and final["counts"]["pending"] == 0
    results = by_node(items)
    assert {name: r["result"] for name, r in results.items()} == {n: n for n in results}
    assert all(r["fnc_id"] for r in results.values())
    assert runs(count) == {"n1": 1, "n2": 1, "n3": 1}


async def test_one_request_id_is_one_job_even_when_submits_race(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    count = tmp_path / "runs.txt"
    body = {"fn_name": "node_behaviour", "fn_args": {"count_path": str(count)},
            "nodes": ["n1"], "timeout": 10, "request_id": "deploy-42"}  # fmt: skip
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1"), "n1", [])
        answers = await asyncio.gather(*(masterd.ok("SubmitJob", body) for _ in range(5)))
        assert len({answer["job_id"] for answer in answers}) == 1
        await follow(masterd, answers[0]["job_id"])
        again = await masterd.ok("SubmitJob", body)
        assert again["job_id"] == answers[0]["job_id"] and again["state"] == "finished"
        status, error, _ = await masterd.put("SubmitJob", {**body, "timeout": 11})
        assert (status, error["error"]["type"]) == (409, "RequestIdConflict")
        listed = await masterd.ok("ListJobs", {"limit": None})
        assert [job["job_id"] for job in listed["jobs"]] == [again["job_id"]]
    assert runs(count) == {"n1": 1}


async def test_a_node_that_does_not_answer_is_unreachable_within_the_timeout(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1"), "n1", [])
        await masterd.ok("Register", registration("gone", port=free_port()))
        with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # never answers
            port = silent.getsockname()[1]
            await masterd.ok("Register", registration("silent", port=port))
            began = time.monotonic()
            state = await masterd.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 2})
            _, items = await follow(masterd, state["job_id"])
            assert time.monotonic() - began < 2 + 1
    results = by_node(items)
    assert results["gone"]["outcome"] == "unreachable"
    assert results["gone"]["error"]["type"] == "NodeUnreachable"
    assert results["silent"]["outcome"] == "unreachable"
    assert results["silent"]["error"]["type"] == "NodeTimeout"
    assert results["n1"]["outcome"] == "ok"


async def test_a_failed_canary_skips_the_rest(tmp_path: Path, make_node: NodeFactory) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1", fail=True), "n1", [])
        for name in ("n2", "n3"):
            await register(masterd, await make_node(name), name, [])
        state = await masterd.ok(
            "SubmitJob",
            {"fn_name": "node_behaviour", "canary": 1, "nodes": ["n1", "n2", "n3"], "timeout": 10},
        )
        final, items = await follow(masterd, state["job_id"])
    outcomes = {name: r["outcome"] for name, r in by_node(items).items()}
    assert outcomes == {"n1": "failed", "n2": "skipped", "n3": "skipped"}
    assert by_node(items)["n1"]["error"]["type"] == "OSError"
    assert final["counts"]["skipped"] == 2


async def test_more_canaries_than_nodes_is_refused_as_call_many_refuses_it(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        for name in ("n1", "n2"):
            await register(masterd, await make_node(name), name, [])
        body = {"fn_name": "node_behaviour", "canary": 3, "nodes": ["n1", "n2"], "timeout": 10}
        status, answer, _ = await masterd.put("SubmitJob", body)
        jobs = await masterd.ok("ListJobs", {})
    assert status == 400, answer
    assert answer["error"]["type"] == "BadRequest"
    assert answer["error"]["message"] == "canary=3 is more than the fan-out's 2 nodes"
    assert jobs["jobs"] == []


async def test_abort_with_calls_aborts_the_running_calls(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    count = tmp_path / "runs.txt"
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        for name in ("n1", "n2", "n3"):
            await register(masterd, await make_node(name, delay_s=30), name, [])
        state = await masterd.ok("SubmitJob", {"fn_name": "node_behaviour", "window": 2,
                                               "fn_args": {"count_path": str(count)},
                                               "timeout": 60})  # fmt: skip
        await until(lambda: _running(masterd, state["job_id"], 2))
        await masterd.ok("AbortJob", {"job_id": state["job_id"], "calls": True})
        final, items = await follow(masterd, state["job_id"], timeout_s=15)
    assert final["state"] == "aborted"
    outcomes = {name: (r["outcome"], (r["error"] or {}).get("type"))
                for name, r in by_node(items).items()}  # fmt: skip
    assert sorted(outcomes.values()) == [("failed", "FunctionAborted")] * 2 + [
        ("skipped", "Skipped")]  # fmt: skip


async def _running(masterd: object, job_id: str, count: int) -> bool:
    state = await masterd.ok("WaitForJob", {"job_id": job_id, "timeout": 0})  # type: ignore[attr-defined]
    return bool(state["counts"]["running"] >= count)


async def test_a_result_over_the_limit_is_left_on_the_node(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    async with run_masterd(["--max-job-result-bytes", "100"], workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1"), "n1", [])
        state = await masterd.ok("SubmitJob", {"fn_name": "big", "fn_args": {"size": 1000}})
        _, items = await follow(masterd, state["job_id"])
    (item,) = items
    assert item["outcome"] == "ok" and item["result"] is None
    assert item["error"]["type"] == "ResultTooLarge" and item["fnc_id"] in item["error"]["message"]


async def test_unknown_and_expired_jobs_are_404(tmp_path: Path, make_node: NodeFactory) -> None:
    async with run_masterd(["--job-ttl", "0.5"], workdir=tmp_path / "m") as masterd:
        status, error, _ = await masterd.put("WaitForJob", {"job_id": "nope", "timeout": 0})
        assert (status, error["error"]["type"]) == (404, "UnknownJob")
        await register(masterd, await make_node("n1"), "n1", [])
        state = await masterd.ok("SubmitJob", {"fn_name": "node_behaviour"})
        await follow(masterd, state["job_id"])

        async def expired() -> bool:
            status, _, _ = await masterd.put("WaitForJob", {"job_id": state["job_id"],
                                                            "timeout": 0})  # fmt: skip
            return status == 404

        await until(expired, timeout_s=5)


async def test_a_failed_nodes_error_over_the_limit_is_cut(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    """attack16 defect 9: --max-job-result-bytes bounded only ok results; a 2 MB error
    (message and traceback) was stored whole."""
    message = "disk failed " + "x" * 20_000
    async with run_masterd(["--max-job-result-bytes", "1000"], workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1"), "n1", [])
        await register(masterd, await make_node("n2"), "n2", [])
        state = await masterd.ok("SubmitJob", {"fn_name": "fail", "nodes": ["n1"],
                                               "fn_args": {"message": message}})  # fmt: skip
        _, (item,) = await follow(masterd, state["job_id"])
        small = await masterd.ok("SubmitJob", {"fn_name": "fail", "nodes": ["n2"],
                                               "fn_args": {"message": "short"}})  # fmt: skip
        _, (kept,) = await follow(masterd, small["job_id"])
    error = item["error"]
    assert item["outcome"] == "failed" and error["type"] == "RuntimeError"
    assert len(orjson.dumps(error)) <= 1000 + 512, len(orjson.dumps(error))
    assert error["truncated"] is True and error["size"] > 20_000
    assert error["message"].startswith("disk failed xxx") and item["fnc_id"] in error["message"]
    assert error["traceback"].startswith("Traceback") and "cut ..." in error["traceback"]
    assert error["traceback"].rstrip().endswith("xxx")  # the raise's line, cut too
    assert kept["error"]["message"] == "short" and "truncated" not in kept["error"]


async def test_labels_that_select_no_node_are_refused_naming_the_labels(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1"), "n1", ["web"])
        body = {"fn_name": "node_behaviour", "labels": ["web", "nosuch"], "timeout": 10}
        status, answer, _ = await masterd.put("SubmitJob", body)
        named = {**body, "nodes": ["n1"]}
        status_named, answer_named, _ = await masterd.put("SubmitJob", named)
        jobs = await masterd.ok("ListJobs", {})
    assert (status, answer["error"]["type"]) == (400, "BadRequest"), answer
    assert answer["error"]["message"] == "no registered node carries the labels 'nosuch', 'web'"
    assert status_named == 400 and "of those named" in answer_named["error"]["message"]
    assert jobs["jobs"] == []


async def test_a_function_no_selected_node_registered_is_refused_with_a_suggestion(
    tmp_path: Path,
) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        for name in ("n1", "n2"):
            await masterd.ok("Register", registration(name, functions=["sleep", "echo"]))
        status, answer, _ = await masterd.put("SubmitJob", {"fn_name": "slep", "timeout": 5})
        await masterd.ok("Register", registration("n3", functions=[]))  # lists none: any
        state = await masterd.ok("SubmitJob", {"fn_name": "slep", "timeout": 1})
        jobs = await masterd.ok("ListJobs", {})
    assert (status, answer["error"]["type"]) == (404, "UnknownFunction"), answer
    message = answer["error"]["message"]
    assert "'slep'" in message and "did you mean 'sleep'?" in message and "echo, sleep" in message
    assert [job["job_id"] for job in jobs["jobs"]] == [state["job_id"]]
