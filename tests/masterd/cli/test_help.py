"""Help that teaches: every argument of the three commands says what it is, every rpc-cli
command's --help its exit statuses, a mistyped flag is answered by its own command, and
the shell completion is made from the parser."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from masterd.cli.exits import EXITS
from masterd.cli.main import build_parser as rpc_cli_parser
from masterd.daemon.cli import build_parser as masterd_parser
from noded.cli import build_parser as noded_parser

Parsers = Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]


def walk(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Parsers:
    """Each parser with the words that reach it: (), ("call",), ("certs", "issue") ..."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from walk(command, (*words, name))


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands that run something (not those that only choose an action)."""
    return {
        " ".join(words): command
        for words, command in walk(parser)
        if words and not any(isinstance(a, argparse._SubParsersAction) for a in command._actions)
    }


@pytest.mark.parametrize("build", [rpc_cli_parser, noded_parser, masterd_parser])
def test_every_argument_and_command_has_help(build: Callable[[], argparse.ArgumentParser]) -> None:
    missing = []
    for words, parser in walk(build()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {choice.dest for choice in action._choices_actions if choice.help}
                missing += [(*words, name) for name in action.choices if name not in listed]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append((*words, "/".join(action.option_strings) or action.dest))
    assert missing == []


def test_certs_issue_says_what_node_and_master_mean() -> None:
    issue = commands(rpc_cli_parser())["certs issue"]
    helps = {flag: action.help for action in issue._actions for flag in action.option_strings}
    assert "a node's" in str(helps["--node"]) and "an operator's" in str(helps["--master"])


def test_every_command_states_its_exit_statuses_from_the_one_table() -> None:
    found = commands(rpc_cli_parser())
    assert set(found) == set(EXITS)  # the table describes exactly the commands there are
    for name, parser in found.items():
        text = parser.format_help()
        assert "exit status:" in text, name
        for status, meaning in EXITS[name].items():
            assert f"{status:>3}  {meaning}" in text, (name, status)
        assert "130  " in text and "141  " in text, name
    top = rpc_cli_parser().format_help()
    assert "exit status:" in top and "environment:" in top and "completion bash|zsh" in top


def rpc_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "masterd.cli", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "command", "meant"),
    [
        (["call", "echo", "--timout", "3"], "rpc-cli call", "--timeout"),
        (["certs", "issue", "pki", "n1", "--node", "--dayz", "3"], "rpc-cli certs issue", "--days"),
    ],
)
def test_a_mistyped_flag_is_answered_by_its_command(
    args: list[str], command: str, meant: str
) -> None:
    ran = rpc_cli(*args)
    assert ran.returncode == 2 and ran.stdout == ""
    usage, error = ran.stderr.splitlines()[0], ran.stderr.splitlines()[-1]
    assert usage.startswith(f"usage: {command} ")  # the command's usage, not the top level's
    assert f"unrecognized arguments: {args[-2]} 3 (did you mean {meant}?)" in error
    assert error.endswith(f"(see: {command} --help)")


def test_bash_completion_is_made_from_the_parser(tmp_path: Path) -> None:
    ran = rpc_cli("completion", "bash")
    assert ran.returncode == 0, ran.stderr
    for word in ("gather", "certs", "issue", "--tls-no-verify-name", "--max-failures"):
        assert word in ran.stdout
    checked = subprocess.run(["bash", "-n"], input=ran.stdout, capture_output=True, text=True,
                             timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    # and it completes: a command's name, and a flag of that command
    script = tmp_path / "rpc-cli.bash"
    script.write_text(ran.stdout)
    asked = f"""source {script}
    COMP_WORDS=(rpc-cli cer); COMP_CWORD=1; _shtab_rpc_cli rpc-cli cer rpc-cli
    echo "${{COMPREPLY[@]}}"
    COMP_WORDS=(rpc-cli call --ti); COMP_CWORD=2; _shtab_rpc_cli rpc-cli --ti call
    echo "${{COMPREPLY[@]}}"
    """
    completed = subprocess.run(["bash", "-c", asked], capture_output=True, text=True,
                               timeout=30, check=False)  # fmt: skip
    assert completed.stdout.split("\n")[:2] == ["certs", "--timeout"], completed.stderr
    # its usage comment names the directory doc/operations.md names (bash-completion's)
    assert "~/.local/share/bash-completion/completions/rpc-cli" in ran.stdout
    assert "bash_completion/" not in ran.stdout
    operations = (Path(__file__).parents[3] / "doc" / "operations.md").read_text()
    assert "> ~/.local/share/bash-completion/completions/rpc-cli" in operations


def test_zsh_completion_is_made_from_the_parser() -> None:
    ran = rpc_cli("completion", "zsh")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("#compdef rpc-cli") and "--tls-no-verify-name" in ran.stdout
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed: the script is made but not syntax-checked")
    checked = subprocess.run(["zsh", "-n"], input=ran.stdout, capture_output=True, text=True,
                             timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("build", [noded_parser, masterd_parser])
def test_the_daemons_help_states_their_exit_statuses(
    build: Callable[[], argparse.ArgumentParser],
) -> None:
    text = build().format_help()
    assert text.rstrip().endswith("130  interrupted (Ctrl-C) while still starting")
    for status in ("    0  stopped", "    1  cannot start", "    2  usage error"):
        assert status in text


def test_masterd_help_names_command_modules_and_each_ctrl_c_status_once() -> None:
    text = masterd_parser().format_help()
    assert "a command module" in text and "function module" not in text
    assert "doc/operations.md" not in text  # noded's page
    events = rpc_cli("events", "--help").stdout
    assert "Ctrl-C ends it with 0" in events and "130  Ctrl-C without --follow" in events
    abort = rpc_cli("job", "abort", "--help").stdout
    assert "1  the job had ended before: nothing was aborted" in abort
    assert "3  the abort is recorded" in abort
