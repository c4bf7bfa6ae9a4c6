"""``ganeti-noded``: parse the command line, build the config, run the server."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import tomllib
from pathlib import Path

from noded import __version__
from noded.config import MiB, NodedConfig
from noded.logs import setup_logging
from noded.server import Server

_D = NodedConfig()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ganeti-noded",
        description="Node daemon: runs registered functions, one process per call.",
    )
    add = p.add_argument
    add("--bind", default=_D.bind, help="address to listen on (default %(default)s)")
    add("--port", type=int, default=_D.port, help="TCP port (default %(default)s; 0 = any)")
    add(
        "--state-dir",
        type=Path,
        default=_D.state_dir,
        help="where the node uuid is kept (default %(default)s)",
    )
    add(
        "--functions",
        default="",
        metavar="MODS",
        help="comma-separated importable modules with @function definitions",
    )
    add("--name", default=None, help="node name in Identify (default: the host name)")
    add(
        "--max-functions",
        type=int,
        default=_D.max_functions,
        help="concurrent function processes before 503 Busy (default %(default)s)",
    )
    add(
        "--max-wait",
        dest="max_wait_s",
        type=float,
        default=_D.max_wait_s,
        metavar="S",
        help="longest single wait a request may ask for (default %(default)s s)",
    )
    add(
        "--result-ttl",
        dest="result_ttl_s",
        type=float,
        default=_D.result_ttl_s,
        metavar="S",
        help="how long finished calls are kept (default %(default)s s)",
    )
    add(
        "--max-retained",
        type=int,
        default=_D.max_retained,
        help="most finished calls kept, oldest dropped first (default %(default)s)",
    )
    add(
        "--shutdown-grace",
        dest="shutdown_grace_s",
        type=float,
        metavar="S",
        default=_D.shutdown_grace_s,
        help="on SIGTERM, wait this long before SIGKILL (default %(default)s s)",
    )
    add(
        "--kill-grace",
        dest="kill_grace_s",
        type=float,
        default=_D.kill_grace_s,
        metavar="S",
        help="on abort, wait this long before SIGKILL (default %(default)s s)",
    )
    add(
        "--max-request-bytes",
        type=int,
        default=_D.max_request_bytes,
        help=f"largest request body (default {_D.max_request_bytes // MiB} MiB)",
    )
    add(
        "--max-result-bytes",
        type=int,
        default=_D.max_result_bytes,
        help=f"largest result frame (default {_D.max_result_bytes // MiB} MiB)",
    )
    add(
        "--stderr-tail-bytes",
        type=int,
        default=_D.stderr_tail_bytes,
        help="how much of a function's stderr is kept (default %(default)s)",
    )
    add(
        "--spawn",
        choices=("fork", "exec"),
        default=_D.spawn,
        help="fork function processes from a pre-loaded fork server (default), or exec a "
        "fresh interpreter per call",
    )
    add(
        "--spare-processes",
        type=int,
        default=_D.spare_processes,
        metavar="N",
        help="with --spawn fork, children kept forked ahead of calls (default %(default)s)",
    )
    add(
        "--idle-timeout",
        dest="idle_timeout_s",
        type=float,
        default=_D.idle_timeout_s,
        metavar="S",
        help="close a connection that has no complete request for this long "
        "(idle, or a slow client; default %(default)s s)",
    )
    add(
        "--insecure",
        action="store_true",
        help="allow listening on a non-loopback address without TLS",
    )
    add("--tls-cert", type=Path, default=None, metavar="FILE", help="this node's certificate")
    add("--tls-key", type=Path, default=None, metavar="FILE", help="its private key")
    add(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="the CA that signs the masters' certificates (a client certificate is required)",
    )
    add(
        "--tls-allowed-clients",
        default="",
        metavar="LIST",
        help="comma-separated SHA-256 fingerprints or common names of the masters taken",
    )
    add("--log-format", choices=("text", "json"), default=_D.log_format)
    add(
        "--log-file",
        type=Path,
        default=None,
        help="log to this file instead of stderr; SIGHUP reopens it (for logrotate)",
    )
    add(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file of these settings by long name (max-functions = 64); flags win",
    )
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def config_from_args(args: argparse.Namespace) -> NodedConfig:
    values = {k: v for k, v in vars(args).items() if k != "config"}
    functions = args.functions
    if isinstance(functions, str):
        functions = functions.split(",")
    values["functions"] = tuple(m.strip() for m in functions if m.strip())
    allowed = args.tls_allowed_clients
    if isinstance(allowed, str):
        allowed = allowed.split(",")
    values["tls_allowed_clients"] = tuple(
        a.strip().lower() if _is_hex(a.strip()) else a.strip() for a in allowed if a.strip()
    )
    return NodedConfig(**values)


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
    defaults = {}
    for key, value in settings.items():
        action = by_flag.get(key.replace("_", "-"))
        if action is None or action.dest in ("config", "help", "version"):
            raise ValueError(f"{path}: unknown setting {key!r}")
        defaults[action.dest] = Path(value) if action.type is Path else value
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
    setup_logging(config.log_format, config.log_file)
    try:
        return Server(config).run()
    except (ImportError, OSError, TypeError, ValueError) as exc:
        print(f"ganeti-noded: cannot start: {exc}", file=sys.stderr)
        return 1


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
