"""``ganeti-masterd``'s entry point: :mod:`masterd.daemon.cli` imported with Ctrl-C held
off (:mod:`rpc_client.entry`); once the loop runs, SIGINT and SIGTERM stop it."""

from __future__ import annotations

from rpc_client.entry import run_main


def main(argv: list[str] | None = None) -> int:
    return run_main("masterd.daemon.cli", argv)
