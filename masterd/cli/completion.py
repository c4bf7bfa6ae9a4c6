"""``rpc-cli completion bash|zsh``: a completion script made from the parser by shtab, so
that it offers exactly the commands and flags ``rpc-cli`` takes, files where it takes a
file.  Install it as doc/operations.md says."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from masterd.cli.exits import EXIT_OK

SHELLS = ("bash", "zsh")


def add_completion_command(sub: Any, parser: argparse.ArgumentParser) -> None:
    """``completion SHELL``, which completes for ``parser`` (rpc-cli's)."""
    completion = sub.add_parser(
        "completion", help="print a shell completion script for rpc-cli (bash or zsh)"
    )
    completion.add_argument(
        "shell",
        choices=SHELLS,
        help="the shell: bash (source it, or put it in bash-completion's directory) or zsh "
        "(put it on $fpath as _rpc-cli)",
    )
    completion.set_defaults(completed_parser=parser)


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab  # only needed here

    parser = args.completed_parser
    _complete_paths(parser)
    script = shtab.complete(parser, shell=args.shell)
    # shtab's usage comment names a directory bash-completion does not read: name the one
    # it loads on demand, as doc/operations.md does (no .bashrc line needed)
    script = script.replace(_SHTAB_BASH_USAGE, _BASH_USAGE)
    sys.stdout.write(script)
    return EXIT_OK


_SHTAB_BASH_USAGE = """\
# 1) Copy this to somewhere (e.g. ~/.local/share/bash_completion/rpc-cli).
# 2) Add the following line to your .bashrc:
#    source ~/.local/share/bash_completion/rpc-cli
"""
_BASH_USAGE = """\
# Put this in ~/.local/share/bash-completion/completions/rpc-cli (or, for every user,
# /usr/share/bash-completion/completions/rpc-cli): bash-completion loads it when needed
# (doc/operations.md, "Help and shell completion"). Or source it from your .bashrc.
"""


def _complete_paths(parser: argparse.ArgumentParser) -> None:
    """Arguments that are paths complete as files (shtab reads ``action.complete``)."""
    import shtab

    for action in parser._actions:
        if action.type is Path:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _complete_paths(command)
