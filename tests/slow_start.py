"""Functions whose import in the daemon (not in its fork server) takes a second and says
when it begins: a moment of the daemon's start-up for a test to signal it in."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from noded import function

#: where the daemon's import of this module writes its pid (unset: no pause)
STARTING_MARK = "NODED_TEST_STARTING_MARK"

_main = sys.modules.get("__main__")
_in_zygote = (
    getattr(getattr(_main, "__spec__", None), "name", "") == "noded.process.child.fork_server"
)
if (_mark := os.environ.get(STARTING_MARK)) and not _in_zygote:
    Path(_mark).write_text(str(os.getpid()))
    time.sleep(1.0)


@function
def started() -> bool:
    """True: the daemon that loaded this module started."""
    return True
