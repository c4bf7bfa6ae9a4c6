"""The shell sessions of README.md and doc/protocol.md call only functions the daemon they
start has (the built-ins, and ``noded.examples`` where it is loaded): doc/protocol.md once
showed ``rpc-cli call add``, which no ganeti-noded serves (issue 33 item 8)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_CALLED = re.compile(r"rpc-cli(?: --?[a-z-]+ \S+)* (?:call|start) ([A-Za-z_]\w*)")


def served(module: Path) -> set[str]:
    """The names the ``@function``s of a module register (``name=`` where given)."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Name) and decorator.id == "function":
                names.add(node.name)
            elif (
                isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "function"
            ):
                named = [k.value for k in decorator.keywords if k.arg == "name"]
                names.add(str(ast.literal_eval(named[0])) if named else node.name)
    return names


def test_the_sessions_call_functions_that_exist() -> None:
    builtins = served(ROOT / "noded" / "builtins.py")
    assert {"echo", "sleep", "node_info"} <= builtins
    examples = served(ROOT / "noded" / "examples.py")
    assert "copy_disks" in examples
    for doc in (ROOT / "README.md", ROOT / "doc" / "protocol.md"):
        called = set(_CALLED.findall(doc.read_text()))
        assert called, doc
        assert called <= builtins | examples, (doc.name, called - builtins - examples)
