"""ganeti-noded: the node daemon that runs one process per function call.

Only the function API lives at the top level (``@function``, ``progress()``), and it is
light on purpose: every function process imports it.
"""

from __future__ import annotations

from noded.process.child.progress import progress
from noded.registry import function
from noded.version import __version__

__all__ = ["__version__", "function", "progress"]
