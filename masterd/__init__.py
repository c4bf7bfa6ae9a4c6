"""The master side: calling functions on nodes with deadlines, one node or many."""

from __future__ import annotations

from masterd.call import CallOptions, RetryPolicy, call_function, run_call, wait_for_call
from masterd.cluster import Cluster
from masterd.gather import GatherSummary, NodeResult, call_many, gather
from masterd.node import Node, load_nodes

__all__ = [
    "CallOptions",
    "Cluster",
    "GatherSummary",
    "Node",
    "NodeResult",
    "RetryPolicy",
    "call_function",
    "call_many",
    "gather",
    "load_nodes",
    "run_call",
    "wait_for_call",
]
