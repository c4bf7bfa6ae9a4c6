"""A package's public names, imported on first use (PEP 562), written once for the three
packages: importing one part of a package (an entry point, ``noded`` in a function
process) then imports nothing else of it.  This module imports nothing of ours."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_names(
    package: str, defined_in: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: a name of ``defined_in`` is
    imported from its module when first asked for, then kept in the package."""
    namespace = vars(sys.modules[package])
    listed = set(public)

    def __getattr__(name: str) -> Any:
        module = defined_in.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # once is enough
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | listed)

    return __getattr__, __dir__
