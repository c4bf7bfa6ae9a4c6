"""Every program's entry point, written once: its command line imported with Ctrl-C held.

A SIGINT that comes while a program still imports (a third of a second) waits until the
imports are done, and then ends the program quietly with 130: nothing has started, nor
been sent to a node, by then.  Delivered during the imports, it would print a traceback,
and during orjson's own initialisation it crashes the interpreter (orjson does not check
the imports it makes then: ijl/orjson#310).  Once a daemon's event loop runs, SIGINT and
SIGTERM are its graceful stop.  This module imports nothing of the project, nor orjson.
"""

from __future__ import annotations

import importlib
import signal

#: a Ctrl-C before the program started: 128 + SIGINT, as a shell reports it
EXIT_INTERRUPTED = 130


def run_main(module: str, argv: list[str] | None = None) -> int:
    """Import ``module`` with SIGINT held off, then return its ``main(argv)``; a Ctrl-C
    that ends it by ``KeyboardInterrupt`` (held, or later) returns 130."""
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            main = importlib.import_module(module).main
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held Ctrl-C raises now
        return int(main(argv))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
