"""``ganeti-masterd``: parse the command line (and a TOML config), build the config, run
the server.  One flag per field of :class:`MasterdConfig`, as ganeti-noded's."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

from masterd.daemon.config import MasterdConfig, is_loopback
from masterd.daemon.server import Server
from masterd.store.lock import StoreInUse
from rpc_client import flags
from rpc_client.errors import RemoteError
from rpc_client.logs import setup_logging

_METAVARS = {int: "N", float: "S", Path: "PATH", str: "TEXT"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganeti-masterd",
        description="Master daemon: the node registry, events from nodes, in a store.",
    )
    hints = typing.get_type_hints(MasterdConfig)
    for setting in dataclasses.fields(MasterdConfig):
        parser.add_argument(flag_of(setting), **argument_of(setting, hints[setting.name]))
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="a TOML file of these settings by long name "
                             "(heartbeat-s = 10); flags win")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("noded")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def flag_of(setting: dataclasses.Field[Any]) -> str:
    """``heartbeat_s`` is ``--heartbeat-s`` (the contract's flag); other units stay out."""
    named = setting.metadata.get("flag")
    if named:
        return str(named)
    name = setting.name if setting.name == "heartbeat_s" else setting.name.removesuffix("_s")
    return "--" + name.replace("_", "-")


def argument_of(setting: dataclasses.Field[Any], hint: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dest": setting.name, "default": setting.default,
                              "help": setting.metadata["help"]}  # fmt: skip
    if setting.metadata.get("metavar"):
        kwargs["metavar"] = setting.metadata["metavar"]
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint is bool:
        kwargs["action"] = "store_true"
    elif typing.get_origin(hint) is typing.Literal:
        kwargs["choices"] = options
    else:
        kind = options[0] if options else hint
        if kind is not str:
            kwargs["type"] = flags.finite if kind is float else kind
        kwargs.setdefault("metavar", _METAVARS.get(kind))
    return kwargs


def apply_config_file(parser: argparse.ArgumentParser, path: Path) -> None:
    """Make the file's settings the parser's defaults, so that flags still override them."""
    try:
        settings = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config file {path}: {exc}") from exc
    by_flag = {a.option_strings[0].removeprefix("--"): a for a in parser._actions
               if a.option_strings and a.option_strings[0].startswith("--")}  # fmt: skip
    defaults = {}
    for key, value in settings.items():
        action = by_flag.get(key.replace("_", "-"))
        if action is None or action.dest in ("config", "help"):
            raise ValueError(f"{path}: unknown setting {key!r}")
        defaults[action.dest] = flags.toml_value(path, key, action, value)
    parser.set_defaults(**defaults)


def parse_config(argv: list[str] | None) -> tuple[argparse.ArgumentParser, MasterdConfig]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.config is not None:
            apply_config_file(parser, args.config)
            args = parser.parse_args(argv)
        values = {k: v for k, v in vars(args).items() if k != "config"}
        values["commands"] = _modules(values["commands"])
        return parser, MasterdConfig(**values)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))


def _modules(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """--commands a,b (or a TOML list): importable module names."""
    names = value.split(",") if isinstance(value, str) else value
    return tuple(name.strip() for name in names if name.strip())


def main(argv: list[str] | None = None) -> int:
    parser, config = parse_config(argv)
    if not config.tls and not config.insecure and not is_loopback(config.bind):
        parser.error(
            f"refusing to listen on {config.bind} without TLS: anyone who reaches that "
            "address could register as a node or read the events. Bind to 127.0.0.1 or "
            "::1, give --tls-cert, --tls-key and --tls-ca, or pass --insecure if the "
            "network is trusted."
        )
    for flag, path in (("--nodes", config.nodes), ("--tls-cert", config.tls_cert),
                       ("--tls-key", config.tls_key), ("--tls-ca", config.tls_ca)):  # fmt: skip
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path}: no such file")
    try:
        setup_logging(config.log_format, config.log_file)
    except OSError as exc:
        parser.error(f"--log-file {config.log_file}: {exc.strerror or exc}")
    try:
        return Server(config).run()
    except StoreInUse as exc:
        print(f"ganeti-masterd: cannot start: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RemoteError) as exc:
        print(f"ganeti-masterd: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
