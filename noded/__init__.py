"""ganeti-noded: the node daemon that runs one process per function call.

Only the function API lives at the top level, and it is light on purpose: every
function process imports it.
"""

from __future__ import annotations

from noded.registry import function

__all__ = ["function"]
__version__ = "0.1.0"
