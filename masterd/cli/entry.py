"""``rpc-cli``'s entry point: :mod:`masterd.cli.main` imported with Ctrl-C held off
(:mod:`rpc_client.entry`); a Ctrl-C that comes later ends it with 130 too, once what
became of the call is said."""

from __future__ import annotations

from rpc_client.entry import run_main


def main(argv: list[str] | None = None) -> int:
    return run_main("masterd.cli.main", argv)
