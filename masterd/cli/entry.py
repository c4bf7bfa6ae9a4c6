"""``rpc-cli``'s entry point: the command line is imported with Ctrl-C held off.

A SIGINT that comes while rpc-cli is still importing (a third of a second) waits until
the imports are done, and then ends rpc-cli quietly with 130, as one that comes later
does: nothing has been sent to a node by then.  Delivered during the imports, it would
print a traceback, and during orjson's own initialisation it crashes the interpreter
(orjson does not check the imports it makes then: ijl/orjson#310).
"""

from __future__ import annotations

import signal

from masterd.cli.exits import EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            from masterd.cli.main import main as run_command_line
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held Ctrl-C raises now
        return run_command_line(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
