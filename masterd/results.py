"""A fan-out's results: one :class:`NodeResult` per node, and their :class:`GatherSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rpc_client.errors import (
    CallTimeout,
    InsufficientStorage,
    NodeBusy,
    NodeShuttingDown,
    NodeTimeout,
    Skipped,
    TransportError,
    WrongNode,
)

Outcome = Literal["ok", "failed", "timed_out", "unreachable", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "failed", "timed_out", "unreachable", "skipped")
_WORDS = {"timed_out": "timed out"}


@dataclass(frozen=True)
class NodeResult:
    """One node's answer: ``value`` if ``ok``, else the exception in ``error``."""

    node: str
    ok: bool
    value: Any = None
    error: BaseException | None = None

    @property
    def outcome(self) -> Outcome:
        if self.ok:
            return "ok"
        if isinstance(self.error, Skipped):
            return "skipped"
        if isinstance(self.error, CallTimeout | NodeTimeout):
            return "timed_out"
        if isinstance(
            self.error,
            TransportError | WrongNode | NodeBusy | NodeShuttingDown | InsufficientStorage,
        ):
            return "unreachable"
        return "failed"


@dataclass
class GatherSummary:
    """Every node's result, and the node names by outcome."""

    results: dict[str, NodeResult] = field(default_factory=dict)

    def names(self, outcome: Outcome) -> list[str]:
        return sorted(name for name, r in self.results.items() if r.outcome == outcome)

    @property
    def all_ok(self) -> bool:
        return all(r.ok for r in self.results.values())

    def line(self) -> str:
        """``4 nodes: 2 ok, 1 failed (n3), 0 timed out, 1 unreachable (n4)``, and the
        skipped ones if there are any."""
        parts = []
        for outcome in OUTCOMES:
            names = self.names(outcome)
            if outcome == "skipped" and not names:
                continue
            shown = f" ({', '.join(names)})" if names and outcome != "ok" else ""
            parts.append(f"{len(names)} {_WORDS.get(outcome, outcome)}{shown}")
        return f"{counted(len(self.results), 'node')}: " + ", ".join(parts)


def counted(count: int, noun: str) -> str:
    """``1 node``, ``2 nodes``: a count and its noun (English plurals by ``s``)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
