"""``make run``: a real ganeti-noded on 127.0.0.1 and a master calling it.

Over mutual TLS with a throwaway CA (the default path is the secure one), shows a quick
call, a long call polled to completion, a fire-and-forget call collected later, a
failure with its remote error, and a call whose output and progress stream live; then
stops the daemon with SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from masterd.call import CallOptions, call_function, run_call
from masterd.local import LocalNode
from masterd.output import OutputEvent
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


def make_certificates(directory: Path) -> tuple[list[str], TLSConfig]:
    """A throwaway cluster CA, a node certificate and a master certificate."""
    ca = directory / "ca"
    certs.init_ca(ca, name="make-run demo CA")
    node = certs.issue(ca, "demo-node", "node", addresses=("127.0.0.1",))
    master = certs.issue(ca, "demo-master", "master")
    daemon_args = [
        "--functions",
        "noded.examples",
        "--tls-cert",
        str(node.cert),
        "--tls-key",
        str(node.key),
        "--tls-ca",
        str(ca / "ca.crt"),
    ]
    return daemon_args, TLSConfig(
        cert=master.cert, key=master.key, ca=ca / "ca.crt", server_name="demo-node"
    )


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="noded-demo-") as tmp:
        daemon_args, tls = make_certificates(Path(tmp))
        say(f"mutual TLS: a throwaway CA, node and master certificates in {tmp}")
        async with LocalNode.running(daemon_args, workdir=Path(tmp), client_tls=tls) as daemon:
            async with daemon.client(name="demo-node") as node:
                who = await node.identify()
                say(
                    f"ganeti-noded pid {who['pid']} on https://{daemon.address}, node "
                    f"{who['name']!r}, uuid {who['uuid']}"
                )
                say(f"functions: {', '.join(sorted(await node.describe_functions()))}")
                say()
                await quick_call(node)
                await long_call(node)
                await fire_and_forget(node)
                await failing_call(node)
                await live_output(node)
            say()
            say("stopping the daemon with SIGTERM ...")
            status = await daemon.stop()
            say(f"ganeti-noded exited with status {status}; the last lines of its log:")
            for line in daemon.log_text().splitlines()[-3:]:
                say(f"     {line}")
    say()
    say("By hand: see README.md (ganeti-noded, then rpc-cli call/start/wait/list).")
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
