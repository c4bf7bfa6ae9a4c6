"""Example functions: what ``make run`` shows, and a model to copy.

Load with ``ganeti-noded --functions noded.examples``.
"""

from __future__ import annotations

import logging
import sys
import time

from noded import emit, function, progress

log = logging.getLogger(__name__)


@function
def copy_disks(disks: int = 3, seconds_each: float = 0.5) -> dict[str, int]:
    """Pretend to copy ``disks`` disks, saying so as it goes: a line on stdout per disk,
    a warning on stderr, a progress report, and a ``disk.copied`` event to the master."""
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
    for disk in range(1, disks + 1):
        progress((disk - 1) / disks, f"copying disk {disk} of {disks}")
        print(f"copying disk {disk}")
        time.sleep(seconds_each)
        if disk == 2:
            log.warning("disk %d: slow read", disk)
        emit("disk.copied", {"disk": disk})  # to ganeti-masterd, if the node has one
    progress(1.0, f"{disks} disks copied")
    return {"disks": disks}
