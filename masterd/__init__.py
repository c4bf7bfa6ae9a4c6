"""The master side: calling functions on nodes with deadlines, one node or many."""

from __future__ import annotations

from masterd.call import CallOptions, RetryPolicy, call_function, run_call, wait_for_call
from masterd.cluster import Cluster
from masterd.follow import follow
from masterd.gather import GatherSummary, NodeResult, call_many, gather, resume
from masterd.node import Node, load_nodes
from masterd.output import OutputEvent
from masterd.rollout import Rollout

__all__ = [
    "CallOptions",
    "Cluster",
    "GatherSummary",
    "Node",
    "NodeResult",
    "OutputEvent",
    "RetryPolicy",
    "Rollout",
    "call_function",
    "call_many",
    "follow",
    "gather",
    "load_nodes",
    "resume",
    "run_call",
    "wait_for_call",
]
