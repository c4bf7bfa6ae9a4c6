"""``ganeti-masterd``: parse the command line (and a TOML config), build the config, run
the server.  One flag per field of :class:`MasterdConfig`, as ganeti-noded's."""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import sys
from pathlib import Path

from masterd.daemon.config import MasterdConfig, is_loopback
from masterd.daemon.server import Server
from masterd.store.lock import StoreInUse
from rpc_client import flags, tls
from rpc_client.errors import RemoteError
from rpc_client.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = flags.OneLineErrors(
        prog="ganeti-masterd",
        allow_abbrev=False,  # --heartbeat is not --heartbeat-s
        epilog=flags.MASTERD_EXIT_STATUSES,
        description="Master daemon: the node registry, events from nodes, master "
        "commands and jobs, in a store.",
    )
    # ``heartbeat_s`` is ``--heartbeat-s`` (the contract's flag); other units stay out
    flags.add_settings(parser, MasterdConfig, keep_units={"heartbeat_s"})
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


def parse_config(argv: list[str] | None) -> tuple[argparse.ArgumentParser, MasterdConfig]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.config is not None:
            flags.apply_config_file(parser, args.config)
            args = parser.parse_args(argv)
        values = {k: v for k, v in vars(args).items() if k != "config"}
        values["commands"] = flags.listed(values["commands"])
        values["commands_path"] = tuple(Path(path) for path in values["commands_path"])
        return parser, MasterdConfig(**values)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser, config = parse_config(argv)
    if not config.tls and not config.insecure and not is_loopback(config.bind):
        parser.error(
            f"refusing to listen on {config.bind} without TLS: anyone who reaches that "
            "address could register as a node or read the events\nbind to 127.0.0.1 or "
            "::1, give --tls-cert, --tls-key and --tls-ca, or pass --insecure if the "
            "network is trusted"
        )
    for flag, path in (("--nodes", config.nodes), ("--tls-cert", config.tls_cert),
                       ("--tls-key", config.tls_key), ("--tls-ca", config.tls_ca)):  # fmt: skip
        if path is not None and (why := flags.not_a_file(path)):
            parser.error(f"{flag} {path}: {why}")
    if config.tls_cert and config.tls_key and config.tls_ca:
        try:
            tls.check_server_material(config.tls_cert, config.tls_key, config.tls_ca)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        setup_logging(config.log_format, config.log_file)
    except OSError as exc:
        parser.error(f"--log-file {config.log_file}: {exc.strerror or exc}")
    try:
        return Server(config).run()
    except StoreInUse as exc:
        print(f"ganeti-masterd: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # the port: name it and the flag that moves it
            exc = OSError(f"{config.bind}:{config.port}: address already in use (another "
                          "ganeti-masterd?); stop what holds it, or choose another port "
                          "with --port")  # fmt: skip
        words = flags.described(exc, {"--state-dir": config.state_dir})
        print(f"ganeti-masterd: cannot start: {words}", file=sys.stderr)
        return 1
    except (ValueError, RemoteError) as exc:
        print(f"ganeti-masterd: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
