"""ganeti-noded: the node daemon that runs one process per function call.

Only the function API lives at the top level (``@function``, ``progress()``, ``emit()``,
``call_master()``), and it is light on purpose: every function process imports it.  The
names are imported on first
use (PEP 562), so that the daemon's entry point (:mod:`noded.entry`) runs before the
rest of the package is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from noded.version import __version__
from rpc_client.lazy_names import lazy_names

if TYPE_CHECKING:
    from noded.process.child.master import call_master, emit
    from noded.process.child.progress import progress
    from noded.registry import function

#: each lazily imported name, and the module that defines it
_DEFINED_IN = {
    "function": "noded.registry",
    "progress": "noded.process.child.progress",
    "emit": "noded.process.child.master",
    "call_master": "noded.process.child.master",
}

__all__ = ["__version__", "call_master", "emit", "function", "progress"]


__getattr__, __dir__ = lazy_names(__name__, _DEFINED_IN, __all__)
