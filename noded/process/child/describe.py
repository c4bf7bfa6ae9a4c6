"""Importing the function modules, and describing them from another process.

Run as ``python -m noded.process.child.describe MODULE...`` by a reload: it imports the
modules (so that a slow or hanging import never stalls the daemon's event loop) and
writes what the daemon needs of them, every function's name, doc, parameters and
limits, as one JSON object on its stdout: ``{"functions": [...]}``, or ``{"error":
"..."}`` saying why a module did not import.  What the modules print goes to stderr.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import rpc_client
from noded.registry import FunctionSpec, Param, Registry, load_modules


def import_functions(modules: Iterable[str], paths: Iterable[Path] = ()) -> Registry:
    """Import the function modules from ``paths``, then the usual path, then the working
    directory (function processes get the same path); say where it looked if one is not
    there."""
    for path in reversed(list(paths)):
        sys.path.insert(0, str(path.resolve()))
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    registry = load_modules(())  # the built-ins first, as always; the modules fill it
    for module in modules:
        _import_function_module(module)
    return registry


class ModuleMissing(ImportError):
    """Raised when a function module is not found where it was looked for."""


def _import_function_module(module: str) -> None:
    """Import one function module; raises :class:`ImportError` saying where it was looked
    for if it is not there, or what its import raised (a syntax error, a module it needs
    that is not installed, its own code's exception) and where."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(f"{exc.name}.")):
            raise ImportError(f"function module {module!r} cannot be imported: "
                              f"{_what_raised(exc)}") from exc  # fmt: skip
        places = list(dict.fromkeys(place for place in sys.path if place))[:6]
        raise ModuleMissing(
            f"cannot import function module {exc.name!r}: not found in {', '.join(places)}"
            f"{', ...' if len(sys.path) > 6 else ''}; give its directory with "
            "--functions-path DIR"
        ) from exc
    except Exception as exc:  # the module's own code may raise anything
        raise ImportError(
            f"function module {module!r} cannot be imported: {_what_raised(exc)}"
        ) from exc


def _what_raised(exc: BaseException) -> str:
    """``Type: message``, and where in the module's own code (a syntax error says where
    in its message already): ``@function``'s own frames are left out, so that a bad
    annotation points at the user's function, not at the code that read it."""
    said = f"{type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _users(f.filename)]
    if frames and not isinstance(exc, SyntaxError):
        said += f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return said


#: the code ``@function`` runs to declare a function: rpc_client's and the registry's
_DECLARING = (os.path.dirname(rpc_client.__file__) + os.sep, inspect.getfile(load_modules))


def _users(filename: str) -> bool:
    """Whether a traceback frame is in the importing module's code (or what it calls),
    not in the import machinery or ``@function``'s."""
    return "importlib" not in filename and not filename.startswith(_DECLARING)


# --- the description: what the daemon needs of a function, as JSON ----------------------


def describe(registry: Registry) -> list[dict[str, Any]]:
    """Every function of ``registry`` without its code: its spec's other fields."""
    found = []
    for name in registry.names():
        spec = registry.get(name)
        assert spec is not None
        entry = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        del entry["func"]
        entry["params"] = [dataclasses.asdict(param) for param in spec.params]
        found.append(entry)
    return found


def registry_from(described: list[dict[str, Any]]) -> Registry:
    """The daemon's registry of functions imported by another process: it checks
    arguments and describes the functions; their code runs in function processes only."""
    registry = Registry()
    for entry in described:
        params = tuple(Param(**param) for param in entry["params"])
        registry.add(FunctionSpec(**{**entry, "params": params, "func": _imported_elsewhere}))
    return registry


def _imported_elsewhere(**_: Any) -> NoReturn:
    raise RuntimeError("this function was imported in another process; it runs in one")


def main(modules: list[str]) -> None:
    answer = os.dup(1)
    os.dup2(2, 1)  # what the modules print is not the answer
    try:
        document: dict[str, Any] = {"functions": describe(import_functions(modules))}
    except ImportError as exc:  # what the module raised, in its words: "SyntaxError: ..."
        cause = None if isinstance(exc, ModuleMissing) else exc.__cause__
        document = {"error": str(exc) if cause is None else _what_raised(cause)}
    sys.stdout.flush()
    with os.fdopen(answer, "w") as out:
        json.dump(document, out)


if __name__ == "__main__":
    from noded.process.child import describe as this

    this.main(sys.argv[1:])
