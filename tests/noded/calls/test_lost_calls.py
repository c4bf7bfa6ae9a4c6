"""A call lost in a restart is never run again by its request_id (issue 29, item 2), and
a damaged start record stops nothing and signals nothing it does not own (item 21)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from masterd.local import LocalNode
from noded.process.leftovers import process_birth
from rpc_client.client import NodeClient
from rpc_client.errors import RequestIdConflict, UnknownFunctionCall
from tests.helpers import alive, eventually, node_args, node_env, run_node
from tests.pki import make_pki


def tally_args(tmp_path: Path, seconds: float = 60) -> dict[str, Any]:
    return {"path": str(tmp_path / "tally"), "seconds": seconds}


def runs(tmp_path: Path) -> int:
    tally = tmp_path / "tally"
    return tally.read_text().count("run") if tally.exists() else 0


async def start_and_crash(node: LocalNode, tmp_path: Path, request_id: str) -> str:
    """Start a long tally under ``request_id``, wait for its run, SIGKILL the daemon."""
    before = runs(tmp_path)
    async with node.client() as client:
        state = await client.start_function(
            "soak_tally", tally_args(tmp_path), timeout=0, request_id=request_id
        )
    await eventually(lambda: runs(tmp_path) == before + 1)
    node.signal(signal.SIGKILL)
    assert await node.wait_exit(10) is not None
    return state.fnc_id


async def refused_as_lost(client: NodeClient, args: dict[str, Any], request_id: str) -> str:
    with pytest.raises(UnknownFunctionCall) as lost:
        await client.start_function("soak_tally", args, timeout=1, request_id=request_id)
    return lost.value.message


async def test_a_call_lost_in_a_crash_is_not_run_again_by_its_request_id(
    tmp_path: Path,
) -> None:
    args = tally_args(tmp_path)
    async with run_node(workdir=tmp_path) as first:
        fnc_id = await start_and_crash(first, tmp_path, "once")
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        message = await refused_as_lost(client, args, "once")
        assert fnc_id in message and "earlier ganeti-noded" in message
        assert f"call.lost_request_id fnc_id={fnc_id}" in second.log_text()
        assert "lost" in message and f"pid {first.pid}" in message
        with pytest.raises(RequestIdConflict, match=fnc_id):  # other arguments: 409
            await client.start_function(
                "soak_tally", {**args, "seconds": 1}, timeout=0, request_id="once"
            )
        second.signal(signal.SIGKILL)  # the next daemon still knows it
        assert await second.wait_exit(10) is not None
    async with run_node(workdir=tmp_path) as third, third.client() as client:
        assert fnc_id in await refused_as_lost(client, args, "once")
        third.signal(signal.SIGTERM)  # and after a clean stop too
        assert await third.wait_exit(20) == 0
    async with run_node(workdir=tmp_path) as fourth, fourth.client() as client:
        assert fnc_id in await refused_as_lost(client, args, "once")
    assert runs(tmp_path) == 1


async def test_a_lost_request_id_is_kept_as_long_as_a_result_would_be(tmp_path: Path) -> None:
    limits = ["--result-ttl", "3", "--max-retained", "1"]
    async with run_node(limits, workdir=tmp_path) as first:
        older = await start_and_crash(first, tmp_path, "older")
    async with run_node(limits, workdir=tmp_path) as second:
        newer = await start_and_crash(second, tmp_path, "newer")
    journal = tmp_path / "state" / "calls.journal"
    async with run_node(limits, workdir=tmp_path) as third, third.client() as client:
        # --max-retained 1: the older lost call was dropped for the newer one
        assert older not in journal.read_text()
        assert newer in await refused_as_lost(client, tally_args(tmp_path), "newer")
        # --result-ttl 3: then it is forgotten, and the key is free again
        await eventually(lambda: f'"op":"forget","fnc_id":"{newer}"' in journal.read_text())
        again = await client.start_function(
            "soak_tally", tally_args(tmp_path, 0), timeout=10, request_id="newer"
        )
        assert again.finished and again.fnc_id != newer
    assert runs(tmp_path) == 3


async def test_a_call_running_at_a_clean_stop_answers_its_request_id(tmp_path: Path) -> None:
    args = tally_args(tmp_path)
    async with run_node(workdir=tmp_path) as first, first.client() as client:
        state = await client.start_function("soak_tally", args, timeout=0, request_id="key")
        await eventually(lambda: runs(tmp_path) == 1)
    async with run_node(workdir=tmp_path) as second, second.client() as client:
        again = await client.start_function("soak_tally", args, timeout=1, request_id="key")
        assert again.fnc_id == state.fnc_id and again.error is not None
        assert again.error["reason"] == "shutdown"
    assert runs(tmp_path) == 1


# --- item 21: damaged start records --------------------------------------------------


def start_record(cpid: int, pid: int, birth: str | None, **fields: Any) -> dict[str, Any]:
    """A start record of call ``7:<cpid>:...`` that says it ran in ``pid``."""
    return {"op": "start", "fnc_id": f"7:{cpid}:1.000000:0123456789abcdef", "fn_name": "sleep",
            "pid": pid, "pid_birth": birth, "started": 1.0, **fields}  # fmt: skip


def write_journal(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    lines = b"".join(orjson.dumps(record) + b"\n" for record in records)
    (state / "calls.journal").write_bytes(lines)


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.fixture
def bystander() -> Any:
    """A process group of its own that no record may have the daemon kill."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(10)


async def test_a_malformed_pid_birth_stops_nothing(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    write_journal(tmp_path, [start_record(bystander.pid, bystander.pid, "no-colon-here")])
    async with run_node(workdir=tmp_path) as node, node.client() as client:
        assert (await client.identify())["pid"] == node.pid
        assert "journal.bad_record" in node.log_text() and "pid_birth" in node.log_text()
    assert alive(bystander.pid)


async def test_a_start_record_not_naming_its_own_process_signals_nothing(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    birth = process_birth(bystander.pid)
    assert birth is not None
    records = [
        start_record(bystander.pid + 1, bystander.pid, birth),  # not its fnc_id's pid
        start_record(bystander.pid, bystander.pid, birth, cgroup="/sys/fs/cgroup"),
    ]
    write_journal(tmp_path, records)
    async with run_node(workdir=tmp_path) as node:
        log = node.log_text()
    assert log.count("journal.bad_record") == len(records)
    assert "is not its fnc_id's process" in log and "'cgroup'" in log
    assert alive(bystander.pid)


async def test_a_record_naming_the_daemons_own_group_is_never_signalled(
    tmp_path: Path,
) -> None:
    # pid 0 is "my own group" to killpg.  The daemon leads a session of its own
    # (setsid), so that a daemon that signals it kills itself, not the tests.
    write_journal(tmp_path, [start_record(5, 0, f"{boot_id()}:1")])
    async with run_node(workdir=tmp_path, prefix=["setsid"]) as node, node.client() as client:
        assert (await client.identify())["pid"] == node.pid
        assert "journal.bad_record" in node.log_text()


async def test_a_record_naming_the_daemon_itself_is_never_signalled(tmp_path: Path) -> None:
    # The daemon leads a session of its own (setsid), waiting at a gate until its
    # journal names its own pid as a call's (a daemon that signals that group kills
    # itself, not the tests); its birth is the daemon's, since exec keeps it.
    gate = tmp_path / "gate"
    wait_then_exec = ["sh", "-c", 'until [ -e "$0" ]; do sleep 0.02; done; exec "$@"', str(gate)]
    starting = asyncio.create_task(
        LocalNode.start(node_args(), env=node_env(), workdir=tmp_path,
                        prefix=["setsid", *wait_then_exec])
    )  # fmt: skip
    try:
        await eventually(lambda: waiting_at(gate) is not None)
        pid = waiting_at(gate)
        assert pid is not None
        write_journal(tmp_path, [start_record(pid, pid, process_birth(pid))])
        gate.touch()
        node = await starting
    except BaseException:
        starting.cancel()
        raise
    try:
        async with node.client() as client:
            assert (await client.identify())["pid"] == pid
        assert "this daemon's own process, group or session" in node.log_text()
    finally:
        await node.stop()


def waiting_at(gate: Path) -> int | None:
    """The pid of the shell waiting at ``gate``, once it runs."""
    for proc in psutil.process_iter(["cmdline"]):
        if str(gate) in (proc.info["cmdline"] or []):
            return proc.pid
    return None


async def test_a_finish_record_with_an_error_of_no_type_is_skipped(tmp_path: Path) -> None:
    finish = {"op": "finish", "fnc_id": "7:8:1.000000:0123456789abcdef", "fn_name": "echo",
              "pid": 8, "started": 1.0, "finished_at": 9e9, "request_id": None, "digest": "",
              "result": None, "error": {"message": "no type"}}  # fmt: skip
    write_journal(tmp_path, [finish])
    async with run_node(workdir=tmp_path) as node, node.client() as client:
        with pytest.raises(UnknownFunctionCall):
            await client.wait_for_function(str(finish["fnc_id"]), timeout=0)
        assert "field 'error' has no type" in node.log_text()


OWNERS_POLICY = """
[[allow]]
clients = ["master", "other"]
procedures = ["Identify", "StartFunction", "WaitForFunction"]
functions = ["soak_tally"]
"""


async def test_a_lost_request_id_is_its_owners_only(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    for who in ("master", "other"):
        pki.master(who)
    (tmp_path / "policy.toml").write_text(OWNERS_POLICY)
    args = node_args([*pki.node_args(), "--policy", str(tmp_path / "policy.toml")])

    def start() -> Any:
        return LocalNode.start(args, env=node_env(), workdir=tmp_path, client_tls=pki.tls("master"))

    first = await start()
    try:
        fnc_id = await start_and_crash(first, tmp_path, "shared-key")
    finally:
        await first.stop()
    second = await start()
    try:
        async with second.client(tls=pki.tls("master")) as master:
            assert fnc_id in await refused_as_lost(master, tally_args(tmp_path), "shared-key")
        tally = tally_args(tmp_path, 0)
        async with second.client(tls=pki.tls("other")) as other:  # its own key: it runs
            ran = await other.start_function(
                "soak_tally", tally, timeout=10, request_id="shared-key"
            )
            assert ran.finished and ran.error is None
    finally:
        await second.stop()
    assert runs(tmp_path) == 2
