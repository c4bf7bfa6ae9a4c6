"""The master side: calling functions on nodes with deadlines, one node or many."""

from __future__ import annotations

from masterd.call import CallOptions, RetryPolicy, call_function, run_call, wait_for_call
from masterd.cluster import Cluster
from masterd.follow import follow
from masterd.gather import GatherSummary, NodeResult, call_many, gather
from masterd.node import Node, load_nodes
from masterd.output import OutputEvent

__all__ = [
    "CallOptions",
    "Cluster",
    "GatherSummary",
    "Node",
    "NodeResult",
    "OutputEvent",
    "RetryPolicy",
    "call_function",
    "call_many",
    "follow",
    "gather",
    "load_nodes",
    "run_call",
    "wait_for_call",
]
