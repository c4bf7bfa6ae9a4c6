"""``rpc-cli --master ... job`` and ``MasterClient``'s jobs, on a real ganeti-masterd and
real nodes: lines per node as results come, gather's exit statuses, Ctrl-C manners."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson

from masterd import blocking
from masterd.local import free_port
from masterd.master_client import MasterClient
from tests.helpers import NodeFactory, eventually
from tests.masterd.cli.test_operator import RPC_CLI, rpc_cli
from tests.masterd.daemon.running import registration, run_masterd
from tests.masterd.jobs.fleet import register, runs


async def test_submit_follow_prints_a_line_per_node_and_exits_as_gather(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1"), "n1", ["web"])
        await register(masterd, await make_node("n2", fail=True), "n2", ["web"])
        master = ("--master", masterd.address)
        status, out, err = await rpc_cli(*master, "job", "submit", "node_behaviour",
                                         "--labels", "web", "--follow")  # fmt: skip
        lines = {line.split("  ")[0]: line.split("  ") for line in out.splitlines()}
        assert status == 1, err
        assert lines["n1"][1] == "ok" and lines["n1"][3] == '"n1"'
        assert lines["n2"][1] == "failed" and lines["n2"][3].startswith("OSError: disk failed")
        assert err.strip().splitlines()[-1] == "2 nodes: 1 ok, 1 failed"
        status, out, err = await rpc_cli(*master, "job", "submit", "node_behaviour",
                                         "--names", "n1", "--follow")  # fmt: skip
        assert status == 0, err
        await masterd.ok("Register", registration("gone", port=free_port()))
        status, out, err = await rpc_cli(*master, "job", "submit", "node_behaviour",
                                         "--timeout", "2", "--follow")  # fmt: skip
        assert status == 4, err
        status, out, _ = await rpc_cli(*master, "job", "list")
        header, *rows = out.splitlines()
        assert header.split() == ["JOB", "FUNCTION", "STATE", "SUBMITTED", "(UTC)", "NODES"]
        assert {row.index("node_behaviour") for row in rows} == {header.index("FUNCTION")}
        assert {row.index("finished") for row in rows} == {header.index("STATE")}
        nodes_at = header.index("NODES")
        assert all(row[nodes_at - 1] == " " and row[nodes_at].isdigit() for row in rows), rows
        listed = [line.split() for line in rows]
        assert len(listed) == 3 and all(row[1:3] == ["node_behaviour", "finished"]
                                        for row in listed)  # fmt: skip
        status, out, _ = await rpc_cli(*master, "job", "show", listed[-1][0])
        assert status == 1 and len(orjson.loads(out)["results"]) == 2
        status, out, err = await rpc_cli(*master, "job", "abort", listed[-1][0])
        assert status == 1 and orjson.loads(out)["state"] == "finished"
        assert err.strip() == (f"rpc-cli: job {listed[-1][0]} had finished already: nothing "
                               "was aborted")  # fmt: skip


async def test_ctrl_c_on_follow_leaves_the_job_running(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    count = tmp_path / "runs.txt"
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1", delay_s=3), "n1", [])
        args = orjson.dumps({"count_path": str(count)}).decode()
        proc = await asyncio.create_subprocess_exec(
            *RPC_CLI, "--master", masterd.address, "job", "submit", "node_behaviour", args,
            "--follow", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )  # fmt: skip
        await eventually(lambda: runs(count)["n1"] == 1)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, err
        assert "job follow" in err.decode() and "job abort" in err.decode()
        async with MasterClient("127.0.0.1", masterd.port) as client:
            (job,) = await client.jobs()
            items = [item async for item in client.follow_job(job.job_id)]
        assert [(i.node, i.outcome, i.result) for i in items] == [("n1", "ok", "n1")]


async def test_the_blocking_client_submits_follows_and_aborts(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("n1", delay_s=30), "n1", [])

        def operator() -> tuple[str, list[str]]:
            with blocking.MasterClient("127.0.0.1", masterd.port) as client:
                job = client.submit_job("node_behaviour", request_id="k1")
                assert client.submit_job("node_behaviour", request_id="k1").job_id == job.job_id
                client.abort_job(job.job_id, calls=True)
                outcomes = [item.outcome for item in client.follow_job(job.job_id)]
                return client.wait_job(job.job_id).state, outcomes

        # the abort comes right after the submit: the node's start was either sent (its
        # call aborted: failed) or not yet (skipped, never started); never ok
        state, outcomes = await asyncio.to_thread(operator)
        assert state == "aborted" and outcomes in (["failed"], ["skipped"]), outcomes
