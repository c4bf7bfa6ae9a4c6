"""``rpc-cli audit verify FILE...``: does a node's audit log chain hold?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from masterd.cli.exits import EXIT_FAILED, EXIT_OK
from masterd.results import counted
from rpc_client.audit import Break, verify


def add_audit_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="check a node's audit log (--audit-log)")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    check = audit_sub.add_parser(
        "verify",
        help="check the hash chain and seq across FILEs, oldest first (rotated files too)",
    )
    check.add_argument(
        "files", type=Path, nargs="+", metavar="FILE",
        help="the audit log's files, oldest first (the rotated ones, then the current)",
    )  # fmt: skip


def cmd_audit(args: argparse.Namespace) -> int:
    """Exit 0 with the record count if the chain holds, 1 naming the first record that
    breaks it."""
    for path in args.files:
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
    found = verify(args.files)
    if isinstance(found, Break):
        print(f"rpc-cli: audit chain broken at {found}", file=sys.stderr)
        return EXIT_FAILED
    if found.records == 0:
        print("0 records: nothing to check")
    elif found.from_start:
        print(f"{counted(found.records, 'record')}, seq 1 to {found.last_seq}: the chain holds")
    else:
        print(
            f"{counted(found.records, 'record')}, seq {found.first_seq} to {found.last_seq}: "
            "the chain "
            f"holds from seq {found.first_seq} (the records before it are not among the "
            "files given)"
        )
    return EXIT_OK
