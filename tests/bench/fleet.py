"""The master's cost of a fan-out to a mixed fleet of about a thousand nodes.

``python -m tests.bench.fleet [--fake N] [--real N]``: N fake nodes answering
StartFunction after 50-500 ms (one process of their own, a port each), real daemons,
10 refused ports and 10 silent ones; one ``gather`` with ``timeout=10`` over all of them
from this process.  Reported: the master's CPU per node (this process's user+system time
over the fan-out), its memory per node (RSS growth), when the last good result came and
when the last node was named, and whether every node was named exactly once.  With
``--tls``, the fake nodes speak mutual TLS with real certificates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import uvloop
from aiohttp import web

from masterd.cluster import Cluster
from masterd.local import LocalNode, free_port
from masterd.node import Node
from rpc_client.tls import TLSConfig
from tests.helpers import node_args, node_env

TIMEOUT_S = 10.0


# --- the fake fleet (a process of its own) -------------------------------------------


async def _answer(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read() or b"{}")
    await asyncio.sleep(random.uniform(0.05, 0.5))
    state = {
        "fnc_id": "1:2:1763800000.123456:0123456789abcdef", "finished": True,
        "result": body.get("fn_args"), "error": None, "progress": None, "output_next": 0,
    }  # fmt: skip
    return web.Response(body=orjson.dumps(state), content_type="application/json")


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def serve_fleet(count: int, silent: int, tls_dir: Path | None) -> None:
    """Listen on ``count`` answering ports and ``silent`` silent ones; print the ports."""
    app = web.Application()
    app.router.add_put("/StartFunction", _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = None
    if tls_dir is not None:
        from rpc_client.tls import server_context

        context = server_context(tls_dir / "fleet.crt", tls_dir / "fleet.key",
                                 tls_dir / "ca.crt")  # fmt: skip
    ports = []
    for _ in range(count):
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context, backlog=1024)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    quiet = [await asyncio.start_server(_silent, "127.0.0.1", 0) for _ in range(silent)]
    print(json.dumps({"answering": ports, "silent": [s.sockets[0].getsockname()[1]
                                                     for s in quiet]}), flush=True)  # fmt: skip
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def fake_fleet(
    count: int, silent: int, tls_dir: Path | None
) -> AsyncIterator[dict[str, Any]]:
    argv = [sys.executable, "-m", "tests.bench.fleet", "--serve", str(count), str(silent)]
    if tls_dir is not None:
        argv += ["--serve-tls", str(tls_dir)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env={**os.environ, **node_env()})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 120)
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(10)


# --- the measurement -------------------------------------------------------------------


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(nodes: list[Node], expected_ok: int) -> dict[str, Any]:
    """One gather over ``nodes`` from this process: cost and timing.  Start-up's objects
    are frozen out of the collector's way first, as rpc-cli does."""
    gc.freeze()
    rss_before = psutil.Process().memory_info().rss
    cpu_before, began = _cpu_s(), time.monotonic()
    named: dict[str, str] = {}
    last_ok = last = 0.0
    async with Cluster(nodes) as cluster:
        async for result in cluster.call_many("echo", {"value": "x"}, TIMEOUT_S):
            now = time.monotonic() - began
            if result.node in named:
                raise AssertionError(f"{result.node} named twice")
            named[result.node] = result.outcome
            last = now
            if os.environ.get("FLEET_DEBUG") and not result.ok:
                print(f"{now:.3f} {result.node} {result.outcome} {result.error}", file=sys.stderr)
            if result.ok:
                last_ok = now
        rss_after = psutil.Process().memory_info().rss
    cpu = _cpu_s() - cpu_before
    outcomes = {o: sum(1 for v in named.values() if v == o) for o in set(named.values())}
    return {
        "nodes": len(nodes),
        "named": len(named),
        "outcomes": outcomes,
        "ok_expected": expected_ok,
        "cpu_ms_per_node": round(cpu / len(nodes) * 1e3, 3),
        "rss_kib_per_node": round((rss_after - rss_before) / len(nodes) / 1024, 1),
        "last_ok_s": round(last_ok, 3),
        "last_named_s": round(last, 3),
        "bound_s": TIMEOUT_S + 1.0,
    }


@contextlib.contextmanager
def cpus_busy(count: int) -> Iterator[None]:
    """``count`` processes spinning on a CPU each, for as long as the block runs."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(count)]  # fmt: skip
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(10)


async def run(fakes: int, reals: int, tls: bool, busy: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="noded-fleet-") as tmp:
        workdir = Path(tmp)
        tls_dir, client_tls = _pki(workdir) if tls else (None, None)
        async with contextlib.AsyncExitStack() as stack:
            fleet = await stack.enter_async_context(fake_fleet(fakes, 10, tls_dir))
            nodes = [Node(f"fake{i}", "127.0.0.1", port, tls=client_tls)
                     for i, port in enumerate(fleet["answering"])]  # fmt: skip
            nodes += [Node(f"silent{i}", "127.0.0.1", port)
                      for i, port in enumerate(fleet["silent"])]  # fmt: skip
            nodes += [Node(f"refused{i}", "127.0.0.1", free_port()) for i in range(10)]
            if not tls:
                for i in range(reals):
                    daemon = await stack.enter_async_context(LocalNode.running(
                        node_args(), env=node_env(), workdir=workdir / f"real{i}"
                    ))  # fmt: skip
                    nodes.append(Node(f"real{i}", "127.0.0.1", daemon.port))
            random.Random(1).shuffle(nodes)
            with cpus_busy(busy):
                measured = await measure(nodes, fakes + (0 if tls else reals))
            return {**measured, "busy_cpus": busy}


def _pki(workdir: Path) -> tuple[Path, TLSConfig]:
    from rpc_client import certs

    directory = workdir / "pki"
    certs.init_ca(directory)
    certs.issue(directory, "fleet", "node", addresses=("127.0.0.1",))
    master = certs.issue(directory, "master", "master")
    return directory, TLSConfig(cert=master.cert, key=master.key, ca=directory / "ca.crt",
                                verify_name=False)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", type=int, default=1000)
    parser.add_argument("--real", type=int, default=10)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--busy", type=int, default=0, help="CPUs kept busy meanwhile")
    parser.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-tls", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        count, silent = args.serve
        uvloop.run(serve_fleet(count, silent, args.serve_tls))
        return
    print(json.dumps(uvloop.run(run(args.fake, args.real, args.tls, args.busy))))


if __name__ == "__main__":
    main()
