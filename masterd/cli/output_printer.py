"""How rpc-cli shows a call's output: stdout to stdout, stderr and progress to stderr.

One node: chunks are written as they arrive, and progress is a bar redrawn in place on a
terminal (one line per report otherwise).  Many nodes (``gather --follow``): whole lines
only, each prefixed with its node's name, so that nodes' lines never interleave; on a
terminal a node's progress reports are coalesced to one line every
:data:`PROGRESS_LINE_EVERY_S` (the latest report wins, and each node's last one is
shown), while a pipe or a file gets every report, for the scripts that read them
(``gather --progress-every S`` sets it either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TextIO

from masterd.output_events import OutputEvent

_BAR_WIDTH = 24
#: on a terminal, the least time between two progress lines of one node (gather --follow)
PROGRESS_LINE_EVERY_S = 0.5


class _ProgressLines:
    """One node's progress lines at most every ``every_s``: a report that comes sooner
    waits (replaced by any later one) and is shown when its time comes, or at once when
    the node is done."""

    def __init__(self, every_s: float, show: Callable[[str, str], None]) -> None:
        self._every_s = every_s
        self._show = show  # (node, line)
        self._shown_at: dict[str, float] = {}
        self._waiting: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def offer(self, node: str, line: str) -> None:
        wait_s = self._shown_at.get(node, -self._every_s) + self._every_s - time.monotonic()
        if wait_s <= 0 and node not in self._waiting:
            self._show_now(node, line)
            return
        self._waiting[node] = line
        if node not in self._timers:
            with contextlib.suppress(RuntimeError):  # no loop: shown at the node's end
                loop = asyncio.get_running_loop()
                self._timers[node] = loop.call_later(max(wait_s, 0.0), self.flush, node)

    def flush(self, node: str) -> None:
        """Show ``node``'s waiting report now, if it has one."""
        timer = self._timers.pop(node, None)
        if timer is not None:
            timer.cancel()
        line = self._waiting.pop(node, None)
        if line is not None:
            self._show_now(node, line)

    def flush_all(self) -> None:
        for node in sorted(self._waiting.keys() | self._timers.keys()):
            self.flush(node)

    def _show_now(self, node: str, line: str) -> None:
        self._shown_at[node] = time.monotonic()
        self._show(node, line)


class OutputPrinter:
    """Prints :class:`OutputEvent` s; call :meth:`close` at the end."""

    def __init__(
        self, *, prefix_nodes: bool = False, progress_every_s: float | None = None
    ) -> None:
        """With ``prefix_nodes``, each node's progress lines come at most every
        ``progress_every_s`` (0: every report; default PROGRESS_LINE_EVERY_S on a
        terminal, 0 otherwise)."""
        self._prefix_nodes = prefix_nodes
        self._partial: dict[tuple[str, str], str] = {}  # (node, stream) -> line so far
        self._bar_shown = False
        if progress_every_s is None:
            progress_every_s = PROGRESS_LINE_EVERY_S if sys.stderr.isatty() else 0.0
        self._coalesced = (
            _ProgressLines(progress_every_s, lambda node, line: self._line(
                sys.stderr, node, line)) if prefix_nodes and progress_every_s > 0 else None
        )  # fmt: skip

    def __call__(self, event: OutputEvent) -> None:
        if event.stream == "skipped":
            self._line(sys.stderr, event.node, f"rpc-cli: {event.skipped} bytes of output "
                       "were dropped by the node (over its --max-output-bytes)\n")  # fmt: skip
        elif event.stream == "progress":
            self._progress(event)
        elif self._prefix_nodes:
            self._lines(event)
        else:
            self._write(_stream(event.stream), event.text)

    def node_done(self, node: str) -> None:
        """``node``'s call has ended: its last progress report, if one waits, is shown."""
        if self._coalesced is not None:
            self._coalesced.flush(node)

    def close(self) -> None:
        """End a progress bar's line and print what is left of unfinished lines."""
        if self._coalesced is not None:
            self._coalesced.flush_all()
        self._end_bar()
        for (node, stream), text in sorted(self._partial.items()):
            if text:
                self._line(_stream(stream), node, text + "\n")
        self._partial.clear()

    def _lines(self, event: OutputEvent) -> None:
        key = (event.node, event.stream)
        *lines, rest = (self._partial.get(key, "") + event.text).split("\n")
        self._partial[key] = rest
        for line in lines:
            self._line(_stream(event.stream), event.node, line + "\n")

    def _progress(self, event: OutputEvent) -> None:
        percent = "" if event.fraction is None else f"{event.fraction * 100:3.0f}% "
        if self._prefix_nodes or not sys.stderr.isatty():
            line = f"progress {percent}{event.text}".rstrip() + "\n"
            if self._coalesced is not None:
                self._coalesced.offer(event.node, line)
            else:
                self._line(sys.stderr, event.node, line)
            return
        done = 0 if event.fraction is None else round(event.fraction * _BAR_WIDTH)
        bar = "#" * done + "-" * (_BAR_WIDTH - done)
        sys.stderr.write(f"\r\033[K[{bar}] {percent}{event.text}")
        sys.stderr.flush()
        self._bar_shown = True

    def _line(self, out: TextIO, node: str, text: str) -> None:
        self._write(out, f"{node}: {text}" if self._prefix_nodes else text)

    def _write(self, out: TextIO, text: str) -> None:
        self._end_bar()
        out.write(text)
        out.flush()

    def _end_bar(self) -> None:
        if self._bar_shown:
            sys.stderr.write("\n")
            self._bar_shown = False


def _stream(name: str) -> TextIO:
    return sys.stdout if name == "stdout" else sys.stderr
