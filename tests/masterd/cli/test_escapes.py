"""rpc-cli prints a node's strings with their control characters escaped: a hostile or
broken node cannot send terminal escapes or newlines to the operator's terminal."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from masterd.cli.cells import cell, seconds_cell
from masterd.cli.jobs import format_result
from masterd.cli.master import format_event, format_nodes
from masterd.job_state import JobResultItem
from masterd.local import LocalNode
from masterd.master_client import ListedNode, MasterEvent
from tests.fakes import fake_node, read_http_message
from tests.masterd.cli.test_gather import gather_cli, write_nodes_file

EVIL = "e\x1b[31mvil\nname\r\x9b2J\u202e"
SHOWN = "e\\x1b[31mvil\\nname\\r\\x9b2J\\u202e"
HOSTILE_ROWS = [
    {"fnc_id": "1:4:1.000000:0123456789abcdef", "fn_name": EVIL, "finished": True,
     "outcome": "failed", "error_type": "Bad\x07Bell", "started": 1.0, "elapsed_s": 1e300,
     "pid": "4\x1b]0;owned\x07", "cpu_s": "x", "rss_bytes": 1e300, "progress": None},
]  # fmt: skip


async def lists_hostile_rows(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A node answering every request with the same ListFunctions answer."""
    while await read_http_message(reader):
        body = orjson.dumps({"functions": HOSTILE_ROWS})
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()


async def rpc_cli_text(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def test_cell_escapes_c0_c1_and_bidi_controls_only() -> None:
    assert cell(EVIL) == SHOWN
    assert cell("plain é ü 日本 \\ path") == "plain é ü 日本 \\ path"
    assert cell(None) == "None"
    assert seconds_cell(1e300, 1) == "1e+300s" and seconds_cell(12.34, 1) == "12.3s"
    assert seconds_cell(10**400, 1) == "infs" and seconds_cell("\x1b", 1) == "\\x1b"


async def test_list_escapes_a_hostile_nodes_strings() -> None:
    async with fake_node(lists_hostile_rows) as port:
        status, out = await rpc_cli_text("--node", f"127.0.0.1:{port}", "list")
    assert status == 0
    assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3  # header, the one row, the count: no newline broke the row
    row = lines[1]
    assert SHOWN in row and "failed:Bad\\x07Bell" in row and "4\\x1b]0;owned\\x07" in row
    assert "1e+300s" in row and len(row) < 200  # not a 300-digit ELAPSED


async def test_gather_escapes_a_functions_error_message(
    tmp_path: Path, shared_node: LocalNode
) -> None:
    nodes = write_nodes_file(tmp_path, {"n1": shared_node.port})
    status, lines = await gather_cli(nodes, "fail", orjson.dumps({"message": EVIL}).decode())
    assert status != 0
    assert len(lines) == 2, lines  # the node's line and the summary
    assert SHOWN in lines[0] and "\x1b" not in "".join(lines)


def test_the_masters_tables_escape_what_nodes_registered_and_reported() -> None:
    node = ListedNode(name=EVIL, uuid=None, address="127.0.0.1", port=1, labels=(EVIL,),
                      version=EVIL, boot_id=None, instance=None, state="up",
                      last_seen=None, registered=None)  # fmt: skip
    event = MasterEvent(id=1, node=EVIL, seq=1, type=EVIL, at=0.0, data={"m": "\x85"},
                        fnc_id=EVIL)  # fmt: skip
    item = JobResultItem(node=EVIL, outcome="failed", fnc_id=EVIL, result=None,
                         error={"type": EVIL, "message": EVIL})  # fmt: skip
    for text in (format_nodes([node], 0.0), format_event(event), format_result(item)):
        assert SHOWN in text and not any(ch in text for ch in "\x1b\r\x9b\x85\u202e"), text
    assert len(format_nodes([node], 0.0).splitlines()) == 3
    assert "\n" not in format_event(event) + format_result(item)
