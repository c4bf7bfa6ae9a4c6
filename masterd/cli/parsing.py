"""How ``rpc-cli``'s parser speaks: usage errors in one line naming the command's own
``--help``; a mistyped flag after a command answered by that command (its usage, and the
flag it resembles), not by the top level; and every command's ``--help`` ending with its
exit statuses (:data:`masterd.cli.exits.EXITS`, the one table of them)."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any, NoReturn

from masterd.cli.exits import EXIT_USAGE, exit_statuses

#: the top level's --help, after the commands: what a man page would say besides
TOP_EPILOG = """\
Each command's --help says what it takes and its exit statuses: rpc-cli COMMAND --help.

environment:
  RPC_CLI_NODE         the node when --node is not given (default 127.0.0.1:1811)
  NODED_NODES          the nodes file when --nodes is not given
  NODED_MASTER         ganeti-masterd when --master is not given
  NODED_TLS_CERT, NODED_TLS_KEY, NODED_TLS_CA
                       the TLS files when --tls-cert, --tls-key, --tls-ca are not given

exit status: 0 success, 1 failed, 2 usage error or a request refused (an unknown call or
job, bad arguments), 3 not finished yet, 4 node or master unreachable or busy, 130
interrupted (Ctrl-C), 141 stdout's reader went away (| head).

shell completion: rpc-cli completion bash|zsh (doc/operations.md says where to put it).
"""


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, with where to read more (exit 2, as argparse's); its
    commands' parsers are of this class too, and report their own errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"rpc-cli: error: {message} (see: {self.prog} --help)\n")

    def unrecognized(self, extras: list[str]) -> NoReturn:
        """A flag this command does not take: its usage, and the one it resembles."""
        self.print_usage(sys.stderr)
        flags = [flag for action in self._actions for flag in action.option_strings]
        hint = ""
        if extras[0].startswith("-"):
            close = difflib.get_close_matches(extras[0].split("=")[0], flags, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


class _Commands(argparse._SubParsersAction):
    """Arguments a command's parser does not know are that command's error: argparse
    would hand them back to the top level, whose usage does not list the command's flags."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        unknown = argparse._UNRECOGNIZED_ARGS_ATTR
        before = len(getattr(namespace, unknown, ()))
        super().__call__(parser, namespace, values, option_string)
        extras = list(getattr(namespace, unknown, ()))[before:]
        command = self.choices.get(values[0])
        if extras and isinstance(command, Parser):
            command.unrecognized(extras)


def describe_commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> None:
    """Give every command's --help a description (its line in the list of commands) and
    its exit statuses; the top level the environment, the statuses and where to go on."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = _commands_of(parser)
    if not words:
        parser.epilog = TOP_EPILOG
    elif commands is None:
        parser.epilog = exit_statuses(" ".join(words))
    else:
        first = next(iter(commands.choices))
        parser.epilog = (f"exit status: each action's own, in its --help "
                         f"({parser.prog} {first} --help)")  # fmt: skip
    if commands is None:
        return
    helps = {action.dest: action.help for action in commands._choices_actions}
    for name, command in commands.choices.items():
        if command.description is None:
            command.description = helps.get(name)
        describe_commands(command, (*words, name))


def _commands_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None
