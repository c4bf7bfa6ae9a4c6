"""A daemon's command line from its frozen config: one flag per field, and a TOML file of
the same settings (``--config``) whose values become the flags' defaults.

Both daemons (ganeti-noded, ganeti-masterd) build their parsers with it.  A field's
metadata gives its ``help``, ``metavar`` and, where it is not the field's name, its
``flag``; units are in a field's name (``max_wait_s``), not in its flag (``--max-wait``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, NoReturn

_METAVARS = {int: "N", float: "S", Path: "PATH", str: "TEXT"}


#: the daemons' exit statuses, at the end of their --help
EXIT_STATUSES = """\
exit status:
    0  stopped by SIGTERM or SIGINT, in the order doc/operations.md gives
    1  cannot start: the port in use, a function module or the store failing (one line
       on stderr)
    2  usage error: a bad flag, setting or config file (one line and a hint on stderr)
  130  interrupted (Ctrl-C) while still starting
"""
#: ganeti-masterd's: its modules are command modules
MASTERD_EXIT_STATUSES = EXIT_STATUSES.replace(
    ", in the order doc/operations.md gives", ": requests in flight answered, store closed"
).replace("a function module", "a command module")


class _StatusesAsWritten(argparse.HelpFormatter):
    """Help as argparse wraps it, but the exit statuses' table as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text in (EXIT_STATUSES, MASTERD_EXIT_STATUSES):
            return text
        return super()._fill_text(text, width, indent)


class OneLineErrors(argparse.ArgumentParser):
    """A daemon's parser whose usage errors are one line naming what is wrong and one hint
    line, not argparse's usage block (under systemd that block lands in the journal at
    every failed start); exit status 2, as argparse's.  A message's second line, if it has
    one, is its hint; else the hint is ``--help``.  Its --help ends with the exit statuses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_STATUSES)
        kwargs.setdefault("formatter_class", _StatusesAsWritten)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        what, _, hint = message.partition("\n")
        hint = hint.strip() or f"see: {self.prog} --help"
        self.exit(2, f"{self.prog}: error: {what}\n{self.prog}: {hint}\n")


def described(exc: OSError, paths: Mapping[str, Path | None]) -> str:
    """An OSError met while starting, in words: the file and why, named by the flag that
    gave it (or a directory above it): ``--state-dir /x: Not a directory``."""
    if exc.filename is None:
        return str(exc)
    where, why = Path(exc.filename), exc.strerror or str(exc)
    for flag, path in paths.items():
        if path is not None and where == path:
            return f"{flag} {path}: {why}"
        if path is not None and path in where.parents:
            return f"{flag} {path}: {where}: {why}"
    return f"{where}: {why}"


def add_settings(
    parser: argparse.ArgumentParser, config: type[Any], *, keep_units: Collection[str] = ()
) -> None:
    """One flag per field of the dataclass ``config``; ``keep_units``: fields whose flag
    keeps its unit (``heartbeat_s`` is ``--heartbeat-s``)."""
    hints = typing.get_type_hints(config)
    for setting in dataclasses.fields(config):
        flag = flag_of(setting, keep_unit=setting.name in keep_units)
        parser.add_argument(flag, **argument_of(setting, hints[setting.name]))


def flag_of(setting: dataclasses.Field[Any], *, keep_unit: bool = False) -> str:
    """The flag of a setting: units are in the field's name, not in the flag's (unless its
    metadata names the flag, or ``keep_unit``)."""
    named = setting.metadata.get("flag")
    if named:
        return str(named)
    name = setting.name if keep_unit else setting.name.removesuffix("_s")
    return "--" + name.replace("_", "-")


def argument_of(setting: dataclasses.Field[Any], hint: Any) -> dict[str, Any]:
    """``add_argument``'s keywords for one setting, from its type and metadata."""
    kwargs: dict[str, Any] = {
        "dest": setting.name,
        "default": setting.default,
        "help": setting.metadata["help"],
    }
    if setting.metadata.get("metavar"):
        kwargs["metavar"] = setting.metadata["metavar"]
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint is bool:
        kwargs["action"] = "store_true"
    elif typing.get_origin(hint) is typing.Literal:
        kwargs["choices"] = options
    elif typing.get_origin(hint) is tuple and typing.get_args(hint)[:1] == (Path,):
        # a tuple of paths: the flag repeats
        kwargs.update(action="append", type=path, default=[])
    elif typing.get_origin(hint) is tuple:
        kwargs.update(default="", type=comma_separated)  # see listed()
    else:
        kind = options[0] if options else hint  # X | None: an X, or not given
        if kind is not str:
            kwargs["type"] = {float: finite, Path: path}.get(kind, kind)
        kwargs.setdefault("metavar", _METAVARS.get(kind))
    return kwargs


def comma_separated(text: str) -> str:
    """An argparse type: a comma-separated list, kept as given (``listed`` splits it)."""
    return text


def listed(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated flag, or a TOML list, as a tuple of its non-empty items."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item.strip())


def apply_config_file(parser: argparse.ArgumentParser, path: Path) -> None:
    """Make the file's settings the parser's defaults, so that flags still override them.
    A setting is named by its flag (``max-wait``) or its field (``masters`` for
    ``--master``); an unknown one is a ``ValueError``."""
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise ValueError(f"cannot read config file {path}: not UTF-8 text (byte {byte:#04x} "
                         f"at offset {exc.start})") from exc  # fmt: skip
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config file {path}: {exc}") from exc
    by_flag = {
        a.option_strings[0].removeprefix("--"): a
        for a in parser._actions
        if a.option_strings and a.option_strings[0].startswith("--")
    }
    by_dest = {a.dest: a for a in by_flag.values()}
    defaults = {}
    for key, value in settings.items():
        action = by_flag.get(key.replace("_", "-")) or by_dest.get(key.replace("-", "_"))
        if action is None or action.dest in ("config", "help", "version"):
            raise ValueError(f"{path}: unknown setting {key!r}")
        defaults[action.dest] = toml_value(path, key, action, value)
    parser.set_defaults(**defaults)


def toml_value(path: Path, key: str, action: argparse.Action, value: Any) -> Any:
    """A TOML setting's value as its flag's would be (a ``Path``); ``ValueError`` naming
    the file, the key and what it expects for a value of the wrong kind (a number for a
    path, a float for an int, ``nan`` or ``inf`` for a number of seconds)."""
    expected = _expected(action, value)
    if expected is not None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ValueError(f"{path}: {key} = {shown}: {expected}")
    if action.type is path:
        return [Path(v) for v in value] if isinstance(value, list) else Path(value)
    return value


def _expected(action: argparse.Action, value: Any) -> str | None:
    """What a TOML value for ``action`` should have been, or None if it is one."""
    if isinstance(action, argparse._StoreTrueAction):
        return None if isinstance(value, bool) else "expected true or false"
    if action.choices is not None:
        choices = list(action.choices)
        return None if value in choices else "expected one of " + ", ".join(map(repr, choices))
    if action.type is path:
        many = isinstance(action, argparse._AppendAction) and isinstance(value, list)
        paths = value if many else [value]
        if all(isinstance(v, str) and v for v in paths):
            return None
        return (
            "expected a list of paths (non-empty strings)"
            if many
            else "expected a path (a non-empty string)"
        )
    if action.type is int:
        return None if _is_int(value) else "expected an integer"
    if action.type is finite:
        if not (_is_int(value) or isinstance(value, float)):
            return "expected a number"
        return None if math.isfinite(value) else "give a finite number"
    if action.type is comma_separated:
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return None
        return "expected a list of strings (or one comma-separated string)"
    return None if isinstance(value, str) else "expected a string"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def not_a_file(path: Path) -> str | None:
    """Why ``path``, given as a file (a TLS file, a policy), cannot be read as one; None
    if it is a file."""
    if path.is_file():
        return None
    if path.is_dir():
        return "a directory, not a file"
    return "not a regular file" if path.exists() else "no such file"


def path(text: str) -> Path:
    """An argparse type: a path, not an empty string (``Path("")`` is ``.``, the working
    directory, which a file flag would then call a directory)."""
    if not text:
        raise argparse.ArgumentTypeError("give a path, not an empty string")
    return Path(text)


def finite(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused: NaN passes
    every ``<= 0`` check, and an infinite wait or interval is no bound)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number")
    return value


def check_positive(settings: Mapping[str, float | None], *, or_zero: bool = False) -> None:
    """``ValueError`` naming the first setting that is not a finite number > 0 (``or_zero``:
    >= 0); ``None`` is not set, and passes."""
    for name, value in settings.items():
        if value is None:
            continue
        if not math.isfinite(value) or value < 0 or (value == 0 and not or_zero):
            bound = ">= 0" if or_zero else "> 0"
            raise ValueError(f"{name} must be {bound} and finite, got {value}")
