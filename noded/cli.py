"""``ganeti-noded``: parse the command line, build the config, run the server."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

from noded.config import NodedConfig, is_loopback
from noded.server import Server
from noded.version import __version__
from rpc_client.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """One flag per field of :class:`NodedConfig` (``max_wait_s`` is ``--max-wait``), then
    ``--config`` and ``--version``."""
    parser = argparse.ArgumentParser(
        prog="ganeti-noded",
        description="Node daemon: runs registered functions, one process per call.",
    )
    hints = typing.get_type_hints(NodedConfig)
    for setting in dataclasses.fields(NodedConfig):
        parser.add_argument(flag_of(setting), **argument_of(setting, hints[setting.name]))
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file of these settings by long name (max-functions = 64); flags win",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def flag_of(setting: dataclasses.Field[Any]) -> str:
    """The flag of a setting: units are in the field's name, not in the flag's (unless its
    metadata names the flag)."""
    named = setting.metadata.get("flag")
    return named or "--" + setting.name.removesuffix("_s").replace("_", "-")


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
        kwargs.update(action="append", type=Path, default=[])
    elif typing.get_origin(hint) is tuple:
        kwargs["default"] = ""  # a comma-separated list, split by config_from_args
    else:
        kind = options[0] if options else hint  # X | None: an X, or not given
        if kind is not str:
            kwargs["type"] = kind
        kwargs.setdefault("metavar", _METAVARS.get(kind))
    return kwargs


_METAVARS = {int: "N", float: "S", Path: "PATH", str: "TEXT"}


def config_from_args(args: argparse.Namespace) -> NodedConfig:
    values = {k: v for k, v in vars(args).items() if k != "config"}
    functions = args.functions
    if isinstance(functions, str):
        functions = functions.split(",")
    values["functions"] = tuple(m.strip() for m in functions if m.strip())
    values["functions_path"] = tuple(Path(path) for path in args.functions_path)
    for listed in ("masters", "labels"):
        values[listed] = _listed(getattr(args, listed))
    allowed = args.tls_allowed_clients
    if isinstance(allowed, str):
        allowed = allowed.split(",")
    values["tls_allowed_clients"] = tuple(
        a.strip().lower() if _is_hex(a.strip()) else a.strip() for a in allowed if a.strip()
    )
    return NodedConfig(**values)


def _listed(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated flag, or a TOML list, as a tuple of its non-empty items."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item.strip())


def _is_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def apply_config_file(parser: argparse.ArgumentParser, path: Path) -> None:
    """Make the file's settings the parser's defaults, so that flags still override them."""
    try:
        settings = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config file {path}: {exc}") from exc
    by_flag = {
        a.option_strings[0].removeprefix("--"): a
        for a in parser._actions
        if a.option_strings and a.option_strings[0].startswith("--")
    }
    # a setting by its field's name too: ``masters = [...]`` for ``--master``
    by_dest = {a.dest: a for a in by_flag.values()}
    defaults = {}
    for key, value in settings.items():
        action = by_flag.get(key.replace("_", "-")) or by_dest.get(key.replace("-", "_"))
        if action is None or action.dest in ("config", "help", "version"):
            raise ValueError(f"{path}: unknown setting {key!r}")
        if action.type is Path:
            value = [Path(v) for v in value] if isinstance(value, list) else Path(value)
        defaults[action.dest] = value
    parser.set_defaults(**defaults)


def parse_config(argv: list[str] | None) -> tuple[argparse.ArgumentParser, NodedConfig]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.config is not None:
            apply_config_file(parser, args.config)
            args = parser.parse_args(argv)
        return parser, config_from_args(args)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser, config = parse_config(argv)
    if not config.tls and not config.insecure and not is_loopback(config.bind):
        parser.error(
            f"refusing to listen on {config.bind} without TLS: anyone who reaches that "
            "address could run functions as this user. Give --tls-cert, --tls-key and "
            "--tls-ca, bind to 127.0.0.1 or ::1, or pass --insecure if the network is trusted."
        )
    for flag, path in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key),
                       ("--tls-ca", config.tls_ca), ("--policy", config.policy)):  # fmt: skip
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path}: no such file")
    try:
        setup_logging(config.log_format, config.log_file)
    except OSError as exc:  # only a log file can fail here
        parser.error(f"--log-file {config.log_file}: {exc.strerror or exc}")
    try:
        return Server(config).run()
    except (ImportError, OSError, TypeError, ValueError) as exc:
        print(f"ganeti-noded: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
