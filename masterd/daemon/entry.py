"""``ganeti-masterd``'s entry point: the daemon is imported with Ctrl-C held off, as
``noded.entry`` does for ganeti-noded (a SIGINT during orjson's initialisation would crash
the interpreter: ijl/orjson#310); once the loop runs, SIGINT and SIGTERM stop it."""

from __future__ import annotations

import signal

#: a Ctrl-C before the daemon started: 128 + SIGINT, as a shell reports it
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            from masterd.daemon.cli import main as run_daemon
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held Ctrl-C raises now
        return run_daemon(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
