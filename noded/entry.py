"""``ganeti-noded``'s entry point: :mod:`noded.cli` imported with Ctrl-C held off
(:mod:`rpc_client.entry`); once the event loop runs, SIGINT and SIGTERM are the daemon's
graceful stop (:mod:`noded.server`)."""

from __future__ import annotations

from rpc_client.entry import run_main


def main(argv: list[str] | None = None) -> int:
    return run_main("noded.cli", argv)
