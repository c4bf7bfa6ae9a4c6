"""Child processes: spawn, feed, read, signal, reap.  The only package that does so.

- :mod:`noded.process.function`: one call's process (:class:`FunctionProcess`), and the set
  of live ones that shutdown reaches;
- :mod:`noded.process.output`: what a process writes, read with bounds (its result frame,
  its stderr's tail);
- :mod:`noded.process.spawn`: how processes are made (:class:`ExecSpawner`, an interpreter
  per call; the fork server's process, :class:`ZygoteProcess`);
- :mod:`noded.process.leftovers`: a crashed daemon's leftover groups, and resource checks;
- :mod:`noded.process.watcher`: one epoll for every process's descriptors.
"""

from __future__ import annotations

from noded.process.function import (
    FunctionProcess,
    Outcome,
    ProcessLimits,
    ProcessSet,
    Reaper,
)
from noded.process.leftovers import (
    is_resource_shortage,
    kill_leftover_group,
    process_birth,
)
from noded.process.spawn import ExecSpawner, Spawner, ZygoteProcess
from noded.process.watcher import DescriptorWatcher

__all__ = [
    "DescriptorWatcher",
    "ExecSpawner",
    "FunctionProcess",
    "Outcome",
    "ProcessLimits",
    "ProcessSet",
    "Reaper",
    "Spawner",
    "ZygoteProcess",
    "is_resource_shortage",
    "kill_leftover_group",
    "process_birth",
]
