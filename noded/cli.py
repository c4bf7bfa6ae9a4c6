"""``ganeti-noded``: parse the command line, build the config, run the server."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import sys
from pathlib import Path

from noded.config import NodedConfig, check_master_address, is_loopback
from noded.identity import name_under_tls
from noded.server import Server
from noded.version import __version__
from rpc_client import flags, tls
from rpc_client.logs import setup_logging
from rpc_client.master_protocol import MASTER_PORT
from rpc_client.serving.descriptors import DescriptorsTooFew


def build_parser() -> argparse.ArgumentParser:
    """One flag per field of :class:`NodedConfig` (``max_wait_s`` is ``--max-wait``), then
    ``--config`` and ``--version``."""
    parser = flags.OneLineErrors(
        prog="ganeti-noded",
        allow_abbrev=False,  # a mistyped flag is an error, not another flag
        description="Node daemon: runs registered functions, one process per call.",
    )
    flags.add_settings(parser, NodedConfig)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file of these settings by long name (max-functions = 64); flags win",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def config_from_args(args: argparse.Namespace) -> NodedConfig:
    values = {k: v for k, v in vars(args).items() if k != "config"}
    for listed in ("functions", "masters", "labels"):
        values[listed] = flags.listed(getattr(args, listed))
    values["functions_path"] = tuple(Path(path) for path in args.functions_path)
    values["masters"] = tuple(master_address(master) for master in values["masters"])
    allowed = args.tls_allowed_clients
    if isinstance(allowed, str):
        allowed = allowed.split(",")
    values["tls_allowed_clients"] = tuple(
        a.strip().lower() if _is_hex(a.strip()) else a.strip() for a in allowed if a.strip()
    )
    return NodedConfig(**values)


def master_address(address: str) -> str:
    """``--master``'s ``HOST[:PORT]`` as ``HOST:PORT``, the port 1812 when not given (as
    ``rpc-cli --master``); raises ``ValueError`` for anything else, a URL too."""
    address = address.strip()
    if ":" not in address or (address.startswith("[") and address.endswith("]")):
        address = f"{address}:{MASTER_PORT}"
    check_master_address(address)
    return address


def _is_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def parse_config(argv: list[str] | None) -> tuple[argparse.ArgumentParser, NodedConfig]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.config is not None:
            flags.apply_config_file(parser, args.config)
            args = parser.parse_args(argv)
        return parser, config_from_args(args)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser, config = parse_config(argv)
    if not config.tls and not config.insecure and not is_loopback(config.bind):
        parser.error(
            f"refusing to listen on {config.bind} without TLS: anyone who reaches that "
            "address could run functions as this user\ngive --tls-cert, --tls-key and "
            "--tls-ca, bind to 127.0.0.1 or ::1, or pass --insecure if the network is trusted"
        )
    for flag, path in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key),
                       ("--tls-ca", config.tls_ca), ("--policy", config.policy)):  # fmt: skip
        if path is not None and (why := flags.not_a_file(path)):
            parser.error(f"{flag} {path}: {why}")
    if config.tls_cert and config.tls_key and config.tls_ca:
        try:
            tls.check_server_material(config.tls_cert, config.tls_key, config.tls_ca)
            config = dataclasses.replace(config, name=name_under_tls(config))
        except ValueError as exc:
            parser.error(str(exc))
    try:
        setup_logging(config.log_format, config.log_file)
    except OSError as exc:  # only a log file can fail here
        parser.error(f"--log-file {config.log_file}: {exc.strerror or exc}")
    try:
        return Server(config).run()
    except DescriptorsTooFew as exc:  # a configuration that could never serve: usage
        print(f"ganeti-noded: cannot start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # the port: name it and the flag that moves it
            exc = OSError(f"{config.bind}:{config.port}: address already in use (another "
                          "ganeti-noded?); stop what holds it, or choose another port with "
                          "--port")  # fmt: skip
        paths = {"--state-dir": config.state_dir, "--audit-log": config.audit_log}
        print(f"ganeti-noded: cannot start: {flags.described(exc, paths)}", file=sys.stderr)
        return 1
    except (ImportError, TypeError, ValueError) as exc:
        print(f"ganeti-noded: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
