"""The master side: calling functions on nodes with deadlines, one node or many; and
asking ganeti-masterd about its nodes and their events (``MasterClient``).

The names below are imported on first use (PEP 562), so that importing a part of the
package, as ``rpc-cli`` does first, does not import the whole of it: a Ctrl-C while
``rpc-cli`` starts lands in code that can answer it (:mod:`masterd.cli.entry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpc_client.lazy_names import lazy_names

if TYPE_CHECKING:
    from masterd.call import call_function, run_call, wait_for_call
    from masterd.cluster import Cluster
    from masterd.commands import command
    from masterd.fanout import GatherSummary, NodeResult, call_many, gather, resume
    from masterd.follow_output import follow
    from masterd.master_client import MasterClient
    from masterd.node import Node, load_nodes
    from masterd.options import CallOptions, RetryPolicy, Rollout
    from masterd.output_events import OutputEvent

#: each public name, and the module that defines it
_DEFINED_IN = {
    "CallOptions": "masterd.options",
    "RetryPolicy": "masterd.options",
    "call_function": "masterd.call",
    "run_call": "masterd.call",
    "wait_for_call": "masterd.call",
    "Cluster": "masterd.cluster",
    "command": "masterd.commands",
    "follow": "masterd.follow_output",
    "GatherSummary": "masterd.fanout",
    "NodeResult": "masterd.fanout",
    "call_many": "masterd.fanout",
    "gather": "masterd.fanout",
    "resume": "masterd.fanout",
    "MasterClient": "masterd.master_client",
    "Node": "masterd.node",
    "load_nodes": "masterd.node",
    "OutputEvent": "masterd.output_events",
    "Rollout": "masterd.options",
}

__all__ = [
    "CallOptions",
    "Cluster",
    "GatherSummary",
    "MasterClient",
    "Node",
    "NodeResult",
    "OutputEvent",
    "RetryPolicy",
    "Rollout",
    "call_function",
    "call_many",
    "command",
    "follow",
    "gather",
    "load_nodes",
    "resume",
    "run_call",
    "wait_for_call",
]


__getattr__, __dir__ = lazy_names(__name__, _DEFINED_IN, __all__)
