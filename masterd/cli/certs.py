"""``rpc-cli certs init|issue``: a cluster CA and the certificates it signs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from masterd.cli.common import print_json
from masterd.cli.exits import EXIT_OK


def add_certs_commands(sub: Any) -> None:
    certs = sub.add_parser("certs", help="make a cluster CA and certificates")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    init = certs_sub.add_parser("init", help="create a cluster CA in DIR")
    init.add_argument("dir", type=Path, help="the directory for ca.crt and ca.key (made 0700)")
    issue = certs_sub.add_parser("issue", help="issue DIR/NAME.crt and DIR/NAME.key")
    issue.add_argument(
        "dir", type=Path, help="the CA's directory (certs init); NAME.crt goes there"
    )
    issue.add_argument(
        "name", help="the holder: a node's name (as in the nodes file) or an operator's"
    )
    role = issue.add_mutually_exclusive_group(required=True)
    role.add_argument(
        "--node",
        dest="role",
        action="store_const",
        const="node",
        help="a node's: serves its calls, calls ganeti-masterd as itself",
    )
    role.add_argument(
        "--master",
        dest="role",
        action="store_const",
        const="master",
        help="an operator's (rpc-cli, a master): calls nodes, asks masterd",
    )
    role.add_argument("--masterd", dest="role", action="store_const", const="masterd",
                      help="ganeti-masterd's own (give --address)")  # fmt: skip
    issue.add_argument(
        "--address",
        action="append",
        default=[],
        help="an address or other name of the node or masterd (repeatable)",
    )
    issue.add_argument("--days", type=int, default=825, help="valid this long (default 825)")
    issue.add_argument(
        "--force",
        action="store_true",
        help="replace an existing NAME.crt/NAME.key, kept as NAME.crt.old/NAME.key.old",
    )


def cmd_certs(args: argparse.Namespace) -> int:
    from rpc_client import certs  # cryptography is only needed here

    if args.certs_command == "init":
        made = certs.init_ca(args.dir)
    else:
        made = certs.issue(
            args.dir, args.name, args.role, addresses=tuple(args.address), days=args.days,
            force=args.force,
        )  # fmt: skip
    print_json({"cert": str(made.cert), "key": str(made.key)})
    return EXIT_OK
