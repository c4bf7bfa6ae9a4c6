"""Imports in the daemon, fails in the fork server: to test the fallback to exec."""

from __future__ import annotations

import os
import sys

_main = sys.modules.get("__main__")
_in_zygote = (
    getattr(getattr(_main, "__spec__", None), "name", "") == "noded.process.child.fork_server"
)
if os.environ.get("NODED_TEST_BREAK_ZYGOTE") and _in_zygote:
    raise ImportError("this module refuses to load in the fork server (test)")
