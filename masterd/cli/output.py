"""How rpc-cli shows a call's output: stdout to stdout, stderr and progress to stderr.

One node: chunks are written as they arrive, and progress is a bar redrawn in place on a
terminal (one line per report otherwise).  Many nodes (``gather --follow``): whole lines
only, each prefixed with its node's name, so that nodes' lines never interleave.
"""

from __future__ import annotations

import sys
from typing import TextIO

from masterd.output import OutputEvent

_BAR_WIDTH = 24


class OutputPrinter:
    """Prints :class:`OutputEvent` s; call :meth:`close` at the end."""

    def __init__(self, *, prefix_nodes: bool = False) -> None:
        self._prefix_nodes = prefix_nodes
        self._partial: dict[tuple[str, str], str] = {}  # (node, stream) -> line so far
        self._bar_shown = False

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

    def close(self) -> None:
        """End a progress bar's line and print what is left of unfinished lines."""
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
            self._line(sys.stderr, event.node, f"progress {percent}{event.text}".rstrip() + "\n")
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
