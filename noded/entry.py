"""``ganeti-noded``'s entry point: the daemon is imported with Ctrl-C held off.

A SIGINT that comes while the daemon is still importing (a third of a second) waits
until the imports are done, and then ends the daemon quietly with 130: nothing has
started by then.  Delivered during the imports, it would print a traceback, and during
orjson's own initialisation it crashes the interpreter (orjson does not check the
imports it makes then: ijl/orjson#310).  Once the event loop runs, SIGINT and SIGTERM
are the daemon's graceful stop (:mod:`noded.server`).
"""

from __future__ import annotations

import signal

#: a Ctrl-C before the daemon started: 128 + SIGINT, as a shell reports it
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            from noded.cli import main as run_daemon
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held Ctrl-C raises now
        return run_daemon(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
