"""One pass over every process of the machine (``/proc``): who is whose child, which are
zombies, and which show a call's mark in their environment.  Made only where a call's
tree must be walked (no cgroup holds it), off the request's path."""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from noded.process.child.frames import CALL_MARK


@dataclass
class ProcessTable:
    """The processes of the machine at one moment, as a call's tree needs them."""

    children: dict[int, list[int]] = field(default_factory=dict)
    zombies: set[int] = field(default_factory=set)
    #: pid -> mark, for the processes showing one of the marks asked for
    marked: dict[int, str] = field(default_factory=dict)

    def descendants(self, roots: set[int]) -> set[int]:
        """Every descendant of ``roots`` (not themselves)."""
        found: set[int] = set()
        todo = list(roots)
        while todo:
            for child in self.children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found


def process_table(marks: set[str] | None = None) -> ProcessTable:
    """The table now; ``marks``: the call marks to look for (each process's environment
    is read only then)."""
    table = ProcessTable()
    attrs = ["ppid", "status", "environ"] if marks else ["ppid", "status"]
    for proc in psutil.process_iter(attrs):
        ppid, environ = proc.info["ppid"], proc.info.get("environ")
        if ppid is not None:
            table.children.setdefault(ppid, []).append(proc.pid)
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            table.zombies.add(proc.pid)
        mark = environ.get(CALL_MARK) if environ else None
        if marks and mark in marks:
            table.marked[proc.pid] = mark
    return table
