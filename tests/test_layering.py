"""The layout's rules, read from the source with ``ast`` (doc/design.md, "Layers").

1. ``rpc_client`` is the wire library: it imports nothing of ``noded`` or ``masterd``.
2. ``masterd`` builds on ``rpc_client`` only (it starts a daemon as a program, never
   imports one).
3. In the daemon imports point down: entry points -> HTTP -> calls -> processes -> the
   code that runs inside other processes -> the shared base.  Every fork, spawn, kill,
   wait and descriptor passing is under ``noded/process/``.
4. No import cycle; no module over 400 lines; no function over 60 lines.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("rpc_client", "masterd", "noded")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: the daemon's layers, highest first; a module may import its own layer and those below.
#: A name stands for that module and those under it; every module of noded has a layer.
NODED_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("noded.__main__", "noded.entry", "noded.cli", "noded.server", "noded.reload")),
    ("master", ("noded.master",)),
    ("http", ("noded.http",)),
    ("calls", ("noded.calls",)),
    ("processes", ("noded.process",)),
    # what function modules import: ``from noded import function, progress``
    ("function API", ("noded", "noded.examples")),
    ("child", ("noded.process.child",)),
    ("base", ("noded.registry", "noded.builtins", "noded.config", "noded.metrics",
              "noded.identity", "noded.version", "noded.policy",
              "noded.state_lock")),
)  # fmt: skip

#: what only noded/process/ may call: (module, function)
PROCESS_CALLS = {
    ("os", name)
    for name in (
        "fork", "forkpty", "posix_spawn", "posix_spawnp", "kill", "killpg", "waitpid",
        "wait", "wait3", "wait4", "waitid", "pidfd_open", "setsid", "setpgid",
    )
} | {("socket", "send_fds"), ("socket", "recv_fds"), ("signal", "pidfd_send_signal")}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


@functools.cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(), str(modules()[name]))


def imports_of(name: str) -> set[str]:
    """The project modules ``name`` imports, anywhere in it (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # ``from pkg import module`` imports the module
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules() else node.module)
    return {imported for imported in found if imported.split(".")[0] in PACKAGES}


def layer_of(name: str) -> int:
    """The index of the daemon layer of ``name`` in NODED_LAYERS (the longest name wins;
    the package ``noded`` itself stands for itself only)."""
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(NODED_LAYERS):
        for prefix in prefixes:
            under = prefix != "noded" and name.startswith(prefix + ".")
            if (name == prefix or under) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_rules_see_every_layer_and_package() -> None:
    names = modules()
    for package in PACKAGES:
        assert any(in_package(name, package) for name in names), package
    unplaced = [name for name in names if in_package(name, "noded") and layer_of(name) < 0]
    assert not unplaced, "give each module of noded a layer in NODED_LAYERS"
    for layer, prefixes in NODED_LAYERS:
        assert any(layer_of(name) == NODED_LAYERS.index((layer, prefixes)) for name in names)
    assert imports_of("noded.http.app") >= {"noded.calls.supervisor", "noded.http.handlers"}


def imports_out_of(package: str, forbidden: tuple[str, ...]) -> set[tuple[str, str]]:
    """(module, imported) pairs where a module of ``package`` imports a forbidden one."""
    return {
        (name, imported)
        for name in modules()
        if in_package(name, package)
        for imported in imports_of(name)
        if any(in_package(imported, other) for other in forbidden)
    }


def test_the_wire_library_imports_neither_side() -> None:
    assert not imports_out_of("rpc_client", ("noded", "masterd"))


def test_the_master_builds_on_the_wire_library_only() -> None:
    assert not imports_out_of("masterd", ("noded",))
    assert imports_out_of("masterd", ("rpc_client",))  # the check sees what it looks for


def test_the_daemons_imports_point_down() -> None:
    wrong = []
    for name in modules():
        if not in_package(name, "noded"):
            continue
        for imported in imports_of(name):
            if in_package(imported, "masterd"):
                wrong.append(f"{name} imports the master side: {imported}")
            elif in_package(imported, "noded") and layer_of(imported) < layer_of(name):
                upper = NODED_LAYERS[layer_of(imported)][0]
                lower = NODED_LAYERS[layer_of(name)][0]
                wrong.append(f"{name} ({lower}) imports {imported} ({upper})")
    assert not wrong


def process_calls(name: str) -> Iterator[str]:
    aliases = {}  # ``from os import kill`` makes ``kill(...)`` one too
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.ImportFrom) and node.module in {"os", "socket", "signal"}:
            for alias in node.names:
                if (node.module, alias.name) in PROCESS_CALLS:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree(name)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in PROCESS_CALLS:
                yield f"{name}:{node.lineno} {func.value.id}.{func.attr}"
        elif isinstance(func, ast.Name) and func.id in aliases:
            yield f"{name}:{node.lineno} {aliases[func.id]}"


def test_only_the_process_package_touches_child_processes() -> None:
    outside = [
        call
        for name in modules()
        if not in_package(name, "noded.process")
        for call in process_calls(name)
    ]
    assert not outside
    assert any(process_calls("noded.process.function"))  # the check sees what it looks for


def test_no_import_cycle() -> None:
    # A module run with ``-m`` that imports itself by name (runner, zygote: so that what
    # a function imports is the same module object) is not a cycle.
    graph = {name: (imports_of(name) & modules().keys()) - {name} for name in modules()}
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert not cycles


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def test_strongly_connected_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"]]


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_are_short(name: str) -> None:
    source = modules()[name].read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{name} is over {MAX_MODULE_LINES} lines"
    long_functions = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree(name))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long_functions


def test_the_master_daemon_sits_on_its_store_and_the_store_on_nothing_above() -> None:
    """``masterd.store`` is the bottom of ganeti-masterd: it imports neither the daemon
    nor the CLI; the daemon imports no CLI; SQL stays in the store's backends."""
    assert not imports_out_of("masterd.store", ("masterd.daemon", "masterd.cli"))
    assert not imports_out_of("masterd.daemon", ("masterd.cli",))
    assert imports_out_of("masterd.daemon", ("masterd.store",))  # the check sees
    with_sql = [
        name
        for name in modules()
        if in_package(name, "masterd.daemon")
        and any(
            word in modules()[name].read_text() for word in ("SELECT ", "INSERT ", "import sqlite3")
        )
    ]
    assert not with_sql


#: a row of doc/design.md's package table: its package (the first name in backquotes of the
#: first cell) and the modules it names (``name.py``; a path with a slash is from the root)
DESIGN_ROW = re.compile(r"^\| `([\w.]+)`(.*)\|\s*$")


def design_rows() -> list[tuple[str, set[str]]]:
    text = (ROOT / "doc" / "design.md").read_text()
    layers = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in layers.splitlines():
        if match := DESIGN_ROW.match(line):
            named = set(re.findall(r"`([\w/]+\.py)`", match[2]))
            rows.append((match[1], named))
    return rows


def named_module(package: str, file_name: str) -> str:
    if "/" in file_name:
        return module_name(ROOT / file_name)
    return f"{package}.{file_name.removesuffix('.py')}"


def test_the_design_picture_names_every_module_and_only_modules_that_exist() -> None:
    """doc/design.md's table ("Layers") is the tree: each module of the three packages is
    named in its package's row, and each module a row names exists (issue 33, item 10)."""
    rows = design_rows()
    named = {named_module(package, file_name) for package, names in rows for file_name in names}
    packages = {package for package, _ in rows}
    missing = [
        name for name, path in modules().items() if path.name != "__init__.py" and name not in named
    ]
    assert not missing, f"doc/design.md's table does not name {missing}"
    gone = sorted(name for name in named if name not in modules())
    assert not gone, f"doc/design.md's table names modules that do not exist: {gone}"
    homes = {name.rpartition(".")[0] for name, path in modules().items() if path.stem != "__init__"}
    assert homes <= packages, f"doc/design.md's table has no row for {homes - packages}"
