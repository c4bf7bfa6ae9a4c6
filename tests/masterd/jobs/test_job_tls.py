"""Jobs in a cluster on mutual TLS: a real ganeti-masterd with its masterd certificate and
real ganeti-noded nodes with their node certificates and ``--master``; masterd calls the
nodes over TLS with its own certificate and checks each node's against its registered
name."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from masterd.local import LocalNode
from rpc_client import certs
from rpc_client.tls import TLSConfig
from tests.helpers import node_env
from tests.masterd.daemon.running import Masterd, run_masterd, until
from tests.masterd.jobs.fleet import by_node, follow
from tests.noded.master.running import FUNCTIONS, wait_state
from tests.pki import Pki, tls_args

NAMES = ("node1", "node2")


@contextlib.asynccontextmanager
async def tls_masterd(pki: Pki, workdir: Path) -> AsyncIterator[Masterd]:
    own = certs.issue(pki.ca, "masterd1", "masterd", addresses=("127.0.0.1",), force=True)
    operator = pki.master("operator1").client_context()
    async with run_masterd(tls_args(own, pki.ca), workdir=workdir, client_ssl=operator) as m:
        yield m


@contextlib.asynccontextmanager
async def tls_nodes(
    pki: Pki, masterd: Masterd, workdir: Path, certificates: dict[str, str]
) -> AsyncIterator[list[LocalNode]]:
    """A ganeti-noded per ``{name: its certificate's name}``, ``--name name``, registered
    with ``masterd``."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for name, certificate in certificates.items():
            args = ["--functions", FUNCTIONS, "--master", masterd.address, "--labels", "web",
                    "--name", name, *pki.node_args(certificate)]  # fmt: skip
            nodes.append(await stack.enter_async_context(LocalNode.running(
                args, env=node_env(), workdir=workdir / name,
                client_tls=pki.tls("operator1"))))  # fmt: skip
        for name in certificates:
            await wait_state(masterd, name, "alive")
        yield nodes


async def test_a_job_by_labels_reaches_tls_nodes(pki: Pki, tmp_path: Path) -> None:
    """Before, masterd called every node over plain HTTP: each node ended ``unreachable``
    (the connection lost at the node's TLS handshake) after retrying for the whole
    timeout."""
    async with (
        tls_masterd(pki, tmp_path / "m") as masterd,
        tls_nodes(pki, masterd, tmp_path, {name: name for name in NAMES}),
    ):
        state = await masterd.ok("SubmitJob", {"fn_name": "add", "fn_args": {"a": 2, "b": 3},
                                               "labels": ["web"], "timeout": 10})  # fmt: skip
        final, items = await follow(masterd, state["job_id"], timeout_s=30)
    assert final["state"] == "finished", final
    assert {name: (r["outcome"], r["result"]) for name, r in by_node(items).items()} == {
        name: ("ok", 5) for name in NAMES}  # fmt: skip


async def test_abort_job_with_calls_aborts_them_on_tls_nodes(pki: Pki, tmp_path: Path) -> None:
    async with (
        tls_masterd(pki, tmp_path / "m") as masterd,
        tls_nodes(pki, masterd, tmp_path, {name: name for name in NAMES}),
    ):
        body = {"fn_name": "sleep_then", "labels": ["web"], "fn_args": {"seconds": 60}}
        state = await masterd.ok("SubmitJob", {**body, "timeout": 90})
        job_id = state["job_id"]

        async def running() -> bool:
            answer = await masterd.ok("WaitForJob", {"job_id": job_id, "timeout": 0})
            return bool(answer["counts"]["running"] == len(NAMES))

        await until(running, 20.0)
        await masterd.ok("AbortJob", {"job_id": job_id, "calls": True})
        final, items = await follow(masterd, job_id, timeout_s=20)
    assert final["state"] == "aborted", final
    assert {name: (r["outcome"], r["error"]["type"]) for name, r in by_node(items).items()} == {
        name: ("failed", "FunctionAborted") for name in NAMES}  # fmt: skip
    assert "job.abort_failed" not in masterd.log_text()


async def test_a_node_whose_certificate_is_not_its_name_is_not_called(
    pki: Pki, tmp_path: Path
) -> None:
    """masterd checks a node's certificate against the name it registered under: a node
    registered as node2 that presents node1's certificate (its port given to another
    machine, say) is not sent the job; it ends ``unreachable`` naming the mismatch."""
    async with (
        tls_masterd(pki, tmp_path / "m") as masterd,
        tls_nodes(pki, masterd, tmp_path, {"node1": "node1"}) as (node1,),
    ):
        # node2's registration, with node1's address and port (node2's own certificate)
        body = {"uuid": "9b1a3a5e-5d5c-4e0d-9b60-0d6a2f7b1c02", "name": "node2",
                "address": node1.host, "port": node1.port, "boot_id": "b", "instance": "i",
                "pid": 1, "version": "1", "labels": ["other"], "functions": ["add"]}  # fmt: skip
        made = certs.issue(pki.ca, "node2", "node", force=True)
        node2 = TLSConfig(cert=made.cert, key=made.key, ca=pki.ca / "ca.crt").client_context()
        code, answer, _ = await masterd.put("Register", body, client_ssl=node2)
        assert code == 200, answer
        state = await masterd.ok("SubmitJob", {"fn_name": "add", "fn_args": {"a": 1, "b": 1},
                                               "labels": ["other"], "timeout": 3})  # fmt: skip
        _, items = await follow(masterd, state["job_id"], timeout_s=30)
    (item,) = items
    assert (item["node"], item["outcome"]) == ("node2", "unreachable"), item
    assert "TLS handshake failed" in item["error"]["message"], item
    assert "node2" in item["error"]["message"], item
