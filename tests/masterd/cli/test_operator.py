"""rpc-cli in an operator's first hour: an ordinary mistake is one line and exit 2 (never a
traceback), a node that is not there says what to check, and Ctrl-C says what became of
the call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest

from masterd.local import LocalNode, free_port
from rpc_client import certs
from rpc_client.client import NodeClient
from rpc_client.tls import TLSConfig
from tests.helpers import eventually, run_node

RPC_CLI = [sys.executable, "-m", "masterd.cli"]


async def rpc_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *RPC_CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["call", "echo", "{}", "--timeout", "nan"], "finite number of seconds"),
        (["call", "echo", "{}", "--timeout", "-1"], "finite number of seconds"),
        (["start", "echo", "{}", "--timeout", "inf"], "finite number of seconds"),
        (["wait", "1:2:3.000000:0123456789abcdef", "--timeout", "nan"], "finite number"),
        (["call", "echo", "{}", "--wait", "nan"], "finite number of seconds"),
        (["call", "echo", "{}", "--wait", "0"], "seconds > 0"),
        (["--node", "http://h:1811", "identify"], "not a URL"),
        (["--node", "h:99999", "identify"], "port must be a number from 1 to 65535"),
        (["--node", "h:abc", "identify"], "port must be a number from 1 to 65535"),
        (["--tls-cert", "/no/such.crt", "--tls-key", "/k", "--tls-ca", "/c", "identify"],
         "--tls-cert /no/such.crt: no such file"),
        (["--nodes", "/no/nodes.toml", "gather", "echo"], "cannot read the nodes file"),
    ],
)  # fmt: skip
async def test_ordinary_mistakes_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    status, _, err = await rpc_cli(*args)
    assert status == 2 and says in one_line(err)


async def test_a_key_that_is_not_the_certificates_says_so(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    master = certs.issue(tmp_path, "master", "master")
    other = certs.issue(tmp_path, "other", "master")
    tls = ["--tls-cert", str(master.cert), "--tls-key", str(other.key),
           "--tls-ca", str(tmp_path / "ca.crt")]  # fmt: skip
    status, _, err = await rpc_cli(*tls, "identify")
    assert status == 2 and "the key does not belong to the certificate" in one_line(err)


async def test_a_node_where_nothing_listens_says_what_to_check() -> None:
    status, _, err = await rpc_cli("--node", f"127.0.0.1:{free_port()}", "identify")
    assert status == 4
    line = one_line(err)
    assert "nothing listens at" in line and "ganeti-noded runs" in line and "ssl" not in line


async def test_plain_http_to_a_tls_node_and_tls_to_a_plain_one_name_the_mismatch(
    tmp_path: Path, shared_node: LocalNode
) -> None:
    certs.init_ca(tmp_path)
    node = certs.issue(tmp_path, "node1", "node", addresses=("127.0.0.1",))
    master = certs.issue(tmp_path, "master", "master")
    ca = str(tmp_path / "ca.crt")
    daemon_tls = ["--tls-cert", str(node.cert), "--tls-key", str(node.key), "--tls-ca", ca]
    client_tls = ["--tls-cert", str(master.cert), "--tls-key", str(master.key), "--tls-ca", ca]
    probe = TLSConfig(cert=master.cert, key=master.key, ca=tmp_path / "ca.crt",
                      server_name="node1")  # fmt: skip
    async with run_node(daemon_tls, client_tls=probe) as tls_node:
        status, _, err = await rpc_cli("--node", tls_node.address, "identify")
        assert status == 4 and "if the node speaks TLS" in one_line(err)
    status, _, err = await rpc_cli("--node", shared_node.address, *client_tls, "identify")
    assert status == 4 and "does not speak TLS on this port" in one_line(err)


async def test_options_are_taken_after_the_command_too(shared_node: LocalNode) -> None:
    status, out, _ = await rpc_cli("identify", "--node", shared_node.address)
    assert status == 0 and f'"pid": {shared_node.pid}' in out


async def test_version_and_a_successful_abort_exit_0(shared_node: LocalNode) -> None:
    status, out, _ = await rpc_cli("--version")
    assert status == 0 and out.startswith("rpc-cli ")
    async with shared_node.client() as client:
        state = await client.start_function("sleep", {"seconds": 30}, timeout=0)
    status, out, _ = await rpc_cli("--node", shared_node.address, "abort", state.fnc_id)
    assert status == 0 and '"FunctionAborted"' in out


async def test_wait_keeps_waiting_past_the_nodes_max_wait() -> None:
    async with run_node(["--max-wait", "0.5"]) as node, node.client() as client:
        state = await client.start_function("sleep", {"seconds": 2}, timeout=0)
        status, out, _ = await rpc_cli("--node", node.address, "wait", state.fnc_id,
                                       "--timeout", "20")  # fmt: skip
    assert status == 0 and '"result": 2' in out


async def interrupt(node: LocalNode, args: list[str]) -> tuple[int, str]:
    """Run rpc-cli, Ctrl-C it once the node runs its call, and return (status, stderr)."""
    async with node.client() as client:
        before = {call["fnc_id"] for call in await client.list_functions()}
        proc = await asyncio.create_subprocess_exec(
            *RPC_CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            await _until_a_new_call_runs(client, before)
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            _, err = await asyncio.wait_for(proc.communicate(), 10)
            raise AssertionError(f"rpc-cli did not end after Ctrl-C; it said: {err!r}") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def _until_a_new_call_runs(client: NodeClient, before: set[str]) -> None:
    """The call rpc-cli started runs (a sleep may not have started yet on a slow host)."""
    for _ in range(500):
        running = [c for c in await client.list_functions() if not c["finished"]]
        if any(call["fnc_id"] not in before for call in running):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the call rpc-cli started never ran")


@pytest.mark.parametrize("follow", [[], ["--follow"]])
async def test_ctrl_c_aborts_the_call_and_says_so(
    shared_node: LocalNode, follow: list[str]
) -> None:
    args = ["--node", shared_node.address, "call", "sleep", '{"seconds": 60}', *follow]
    status, err = await interrupt(shared_node, args)
    assert status == 130
    aborted = one_line(err)
    assert aborted.startswith("aborted ")
    async with shared_node.client() as client:
        state = await client.wait_for_function(aborted.split()[1], timeout=10)
    assert state.error is not None and state.error["reason"] == "aborted"


async def test_ctrl_c_with_detach_leaves_the_call_and_says_how_to_reattach(
    shared_node: LocalNode,
) -> None:
    args = ["--node", shared_node.address, "call", "sleep", '{"seconds": 60}', "--detach"]
    status, err = await interrupt(shared_node, args)
    assert status == 130 and "runs on (" in err and "Reattach with:" in err
    reattach = one_line(err).split()
    assert reattach[:4] == ["rpc-cli", "--node", shared_node.address, "wait"]
    async with shared_node.client() as client:
        state = await client.wait_for_function(reattach[4], timeout=0)
        assert not state.finished
        await client.abort_function(reattach[4])


async def test_ctrl_c_on_wait_follow_detaches_and_leaves_the_call_running(
    shared_node: LocalNode,
) -> None:
    """What gather's Ctrl-C suggests (``wait FNC --follow``) must not abort the call."""
    async with shared_node.client() as client:
        fnc_id = (await client.start_function("sleep", {"seconds": 60}, timeout=0)).fnc_id
    args = ["--node", shared_node.address, "wait", fnc_id, "--follow"]
    proc, err = await _interrupted_once_connected(args, shared_node)
    said = err.decode()
    assert proc.returncode == 130, said
    assert f"abort {fnc_id} stops it" in said and "aborted" not in said
    assert one_line(said).split() == ["rpc-cli", "--node", shared_node.address, "wait",
                                      fnc_id, "--follow"]  # fmt: skip
    async with shared_node.client() as client:
        assert not (await client.wait_for_function(fnc_id, timeout=0)).finished
        await client.abort_function(fnc_id)


async def test_ctrl_c_during_a_plain_wait_stops_waiting_and_says_the_call_runs_on(
    shared_node: LocalNode,
) -> None:
    async with shared_node.client() as client:
        fnc_id = (await client.start_function("sleep", {"seconds": 60}, timeout=0)).fnc_id
    args = ["--node", shared_node.address, "wait", fnc_id, "--timeout", "60"]
    proc, err = await _interrupted_once_connected(args, shared_node)
    assert proc.returncode == 130
    assert one_line(err.decode()) == (
        f"rpc-cli: stopped waiting; {fnc_id} runs on "
        f"(rpc-cli --node {shared_node.address} abort {fnc_id} stops it)"
    )
    async with shared_node.client() as client:
        assert not (await client.wait_for_function(fnc_id, timeout=0)).finished
        await client.abort_function(fnc_id)


async def _interrupted_once_connected(
    args: list[str], node: LocalNode
) -> tuple[asyncio.subprocess.Process, bytes]:
    """rpc-cli ARGS, sent SIGINT once its request is on its way (a connection to the node
    is open); the ended process and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *RPC_CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await eventually(lambda: _connected(proc.pid, node.port), 30)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return proc, err


def _connected(pid: int, port: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return any(
            c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
            for c in psutil.Process(pid).net_connections(kind="tcp")
        )
    return False


async def test_ctrl_c_while_rpc_cli_still_imports_ends_it_quietly_with_130(
    shared_node: LocalNode,
) -> None:
    """Python reports each import as it ends (PYTHONPROFILEIMPORTTIME): the signal is
    sent once asyncio's C part is imported, with most of the master side still to come."""
    args = ["--node", shared_node.address, "call", "sleep", '{"seconds": 60}']
    proc = await asyncio.create_subprocess_exec(
        *RPC_CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        while (
            not (line := await asyncio.wait_for(proc.stderr.readline(), 30))
            .rstrip()
            .endswith(b" _asyncio")
        ):
            assert line, "rpc-cli never imported asyncio"
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    said = [line for line in err.decode().splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 130, said
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in said), said


async def test_tls_from_the_environment_and_a_node_by_its_name_in_the_nodes_file(
    tmp_path: Path,
) -> None:
    certs.init_ca(tmp_path)
    node = certs.issue(tmp_path, "node1", "node", addresses=("127.0.0.1",))
    master = certs.issue(tmp_path, "master", "master")
    ca = tmp_path / "ca.crt"
    probe = TLSConfig(cert=master.cert, key=master.key, ca=ca, server_name="node1")
    daemon_tls = ["--tls-cert", str(node.cert), "--tls-key", str(node.key), "--tls-ca", str(ca)]
    async with run_node(daemon_tls, client_tls=probe) as daemon:
        nodes = tmp_path / "nodes.toml"
        nodes.write_text(f'[[node]]\nname = "node1"\naddress = "127.0.0.1"\nport = {daemon.port}\n')
        env = {"NODED_TLS_CERT": str(master.cert), "NODED_TLS_KEY": str(master.key),
               "NODED_TLS_CA": str(ca), "NODED_NODES": str(nodes)}  # fmt: skip
        status, out, err = await rpc_cli("--node", "node1", "identify", env=env)
        assert status == 0 and f'"pid": {daemon.pid}' in out, err
        status, _, err = await rpc_cli("--node", "node1", "--tls-cert", "/no/such.crt",
                                       "identify", env=env)  # fmt: skip
        assert status == 2 and "--tls-cert /no/such.crt" in one_line(err)  # the flag wins


async def test_raw_prints_only_the_result_for_scripts(shared_node: LocalNode) -> None:
    status, out, _ = await rpc_cli("--node", shared_node.address, "call", "echo",
                                   '{"value": {"a": [1, 2]}}', "--raw")  # fmt: skip
    assert status == 0 and out == '{"a":[1,2]}\n'
    status, out, err = await rpc_cli("--node", shared_node.address, "call", "fail",
                                     '{"message": "boom"}', "--raw")  # fmt: skip
    assert status == 1 and out == "" and "RuntimeError: boom" in err
    assert err.count("boom") == 1, err  # the traceback's last line says it; not again


async def test_a_successful_abort_does_not_say_function_failed(shared_node: LocalNode) -> None:
    where = ("--node", shared_node.address)
    status, out, _ = await rpc_cli(*where, "start", "sleep", '{"seconds": 30}')
    fnc_id = orjson.loads(out)["fnc_id"]
    status, out, err = await rpc_cli(*where, "abort", fnc_id)
    assert status == 0 and orjson.loads(out)["error"]["type"] == "FunctionAborted"
    assert "failed" not in err, err


def test_on_a_terminal_a_failures_traceback_is_text(shared_node: LocalNode) -> None:
    main_end, terminal = pty.openpty()
    args = ["--node", shared_node.address, "call", "fail", '{"message": "boom"}']
    done = subprocess.run([*RPC_CLI, *args], stdout=terminal, stderr=subprocess.PIPE,
                          timeout=60, text=True)  # fmt: skip
    os.close(terminal)
    shown = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(main_end, 65536):
            shown += chunk
    os.close(main_end)
    assert done.returncode == 1
    assert b'"traceback": "(below)"' in shown
    assert "Traceback (most recent call last):\n" in done.stderr  # lines, not "\\n" in JSON
