"""``make run``: a real ganeti-masterd and ganeti-noded on 127.0.0.1, and a master
calling the node.

Over mutual TLS with a throwaway CA (the default path is the secure one), shows the node
registering with ganeti-masterd, a quick call, a long call polled to completion, a
fire-and-forget call collected later, a failure with its remote error, a call whose
output and progress stream live, a function's events reaching the master as they
happen, and a job submitted to ganeti-masterd (which calls the node over TLS with its own
certificate); then stops both daemons with SIGTERM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import tempfile
import time
from pathlib import Path

from masterd.call import CallOptions, call_function, run_call
from masterd.demo_master import (
    events_arriving,
    job_through_master,
    show_last_events,
    show_registration,
)
from masterd.local import LocalNode
from masterd.local_masterd import LocalMasterd
from masterd.output_events import OutputEvent
from rpc_client import certs
from rpc_client.client import NodeClient
from rpc_client.errors import FunctionFailed
from rpc_client.protocol import CallState
from rpc_client.tls import TLSConfig


def say(text: str = "") -> None:
    print(text, flush=True)


async def quick_call(node: NodeClient) -> None:
    began = time.monotonic()
    result = await call_function(node, "echo", {"value": "hello, node"}, timeout=10)
    took_ms = (time.monotonic() - began) * 1000
    say(f"1. quick call      echo('hello, node') -> {result!r}  ({took_ms:.0f} ms)")


async def long_call(node: NodeClient) -> None:
    say("2. long call       sleep(2), each request waits at most 0.5 s on the node:")
    began = time.monotonic()

    def progress(state: CallState) -> None:
        say(f"     {time.monotonic() - began:4.1f} s  still running  {state.fnc_id}")

    options = CallOptions(wait_s=0.5)
    state = await run_call(node, "sleep", {"seconds": 2}, 30, options, on_progress=progress)
    say(f"     {time.monotonic() - began:4.1f} s  finished -> {state.result!r}")


async def fire_and_forget(node: NodeClient) -> None:
    state = await node.start_function("sleep", {"seconds": 1}, timeout=0)
    say(f"3. fire-and-forget sleep(1) with timeout=0 answers at once: finished={state.finished}")
    say(f"     fnc_id {state.fnc_id}  (noded pid : function pid : start time : random)")
    state = await node.wait_for_function(state.fnc_id, timeout=5)
    say(f"     collected later with WaitForFunction -> {state.result!r}")


async def failing_call(node: NodeClient) -> None:
    try:
        await call_function(node, "sleep", {"seconds": -1}, timeout=10)
    except FunctionFailed as exc:
        last_line = (exc.traceback or "").strip().splitlines()[-1:]
        say(f"4. a failure       sleep(-1) raised FunctionFailed: {exc}")
        say(f"     remote traceback ends with: {last_line[0] if last_line else '-'}")
    else:
        raise AssertionError("sleep(-1) should have failed")


async def live_output(node: NodeClient) -> None:
    say("5. live output     copy_disks(3): its stdout, stderr and progress as they happen:")
    began = time.monotonic()

    def show(event: OutputEvent) -> None:
        if event.stream == "progress":
            done = "   ?" if event.fraction is None else f"{event.fraction:4.0%}"
            shown = f"progress {done}  {event.text}"
        else:
            shown = f"{event.stream:<8} {event.text.rstrip()}"
        say(f"     {time.monotonic() - began:4.1f} s  {shown}")

    result = await call_function(node, "copy_disks", {"disks": 3}, timeout=30, on_output=show)
    say(f"     {time.monotonic() - began:4.1f} s  finished -> {result!r}")


def make_certificates(directory: Path) -> tuple[list[str], TLSConfig, list[str]]:
    """A throwaway cluster CA, a node certificate, an operator certificate (for the
    master side) and ganeti-masterd's; the node's and masterd's arguments, and the
    operator's TLS towards the node."""
    ca = directory / "ca"
    certs.init_ca(ca, name="make-run demo CA")
    node = certs.issue(ca, "demo-node", "node", addresses=("127.0.0.1",))
    master = certs.issue(ca, "demo-master", "master")
    masterd = certs.issue(ca, "demo-masterd", "masterd", addresses=("127.0.0.1",))
    masterd_args = ["--heartbeat-s", "5", "--tls-cert", str(masterd.cert), "--tls-key",
                    str(masterd.key), "--tls-ca", str(ca / "ca.crt")]  # fmt: skip
    daemon_args = [  # no --name: a node on TLS is named by its certificate (demo-node)
        "--functions",
        "noded.examples",
        "--tls-cert",
        str(node.cert),
        "--tls-key",
        str(node.key),
        "--tls-ca",
        str(ca / "ca.crt"),
    ]
    return (
        daemon_args,
        TLSConfig(cert=master.cert, key=master.key, ca=ca / "ca.crt", server_name="demo-node"),
        masterd_args,
    )


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="noded-demo-") as tmp:
        daemon_args, tls, masterd_args = make_certificates(Path(tmp))
        say(f"mutual TLS: a throwaway CA, node, operator and masterd certificates in {tmp}")
        operator = dataclasses.replace(tls, server_name=None)  # masterd's: 127.0.0.1
        async with LocalMasterd.running(  # both start at once: they take a second or two
            masterd_args, workdir=Path(tmp) / "masterd", client_tls=operator, ready=False
        ) as masterd:
            daemon_args += ["--master", masterd.address, "--labels", "demo,rack1"]
            async with masterd.client() as master:
                status = await node_part(daemon_args, tls, Path(tmp), masterd)
                say()
                await show_last_events(master, say)
            say("stopping ganeti-masterd with SIGTERM ...")
            masterd_status = await masterd.stop()
            say(f"ganeti-masterd exited with status {masterd_status}")
    say()
    say(
        "By hand: see README.md (ganeti-noded, then rpc-cli call/start/wait/list; "
        "ganeti-masterd, ganeti-noded --master, rpc-cli --master ... nodes/events) "
        "and doc/masterd.md."
    )
    return 0 if status == 0 and masterd_status == 0 else 1


async def node_part(
    daemon_args: list[str], tls: TLSConfig, tmp: Path, masterd: LocalMasterd
) -> int:
    """The node: it registers, is called, emits events; then it stops."""
    async with LocalNode.running(daemon_args, workdir=tmp, client_tls=tls) as daemon:
        await masterd.wait_ready()
        say(f"ganeti-masterd pid {masterd.pid} on https://{masterd.address}")
        async with daemon.client(name="demo-node") as node, masterd.client() as master:
            who = await node.identify()
            say(
                f"ganeti-noded pid {who['pid']} on https://{daemon.address}, node "
                f"{who['name']!r}, uuid {who['uuid']}"
            )
            say(f"functions: {', '.join(sorted(await node.describe_functions()))}")
            await show_registration(master, str(who["name"]), say)
            say()
            await quick_call(node)
            await long_call(node)
            await fire_and_forget(node)
            await failing_call(node)
            await live_output(node)
            await events_arriving(node, master, say)
            await job_through_master(master, say)
        say()
        say("stopping the daemon with SIGTERM ...")
        status = await daemon.stop()
        say(f"ganeti-noded exited with status {status}; the last lines of its log:")
        for line in daemon.log_text().splitlines()[-3:]:
            say(f"     {line}")
    return status


def run() -> int:
    """``make run``: Ctrl-C stops the daemons (the context managers above) and exits 130
    with one line, not a traceback, whatever the interrupted step raised (the node, in
    the same process group, aborts its calls on the same SIGINT)."""
    interrupted = asyncio.Event()

    async def until_interrupted() -> int:
        task = asyncio.current_task()
        assert task is not None

        def on_sigint() -> None:
            interrupted.set()
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, on_sigint)
        return await main()

    try:
        return asyncio.run(until_interrupted())
    except (KeyboardInterrupt, asyncio.CancelledError, Exception):
        if not interrupted.is_set():
            raise
    print("\ninterrupted: the daemons are stopped and the demo's files removed",
          file=sys.stderr)  # fmt: skip
    return 130


if __name__ == "__main__":
    sys.exit(run())
