"""``rpc-cli``'s entry point.  It imports the command line only once it stands ready for
a Ctrl-C: one that comes while the master side is still being imported (a third of a
second) ends rpc-cli quietly with 130, as one that comes later does, not with a
traceback.  Nothing has been sent to a node by then."""

from __future__ import annotations

from masterd.cli.exits import EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    try:
        from masterd.cli.main import main as run_command_line

        return run_command_line(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
