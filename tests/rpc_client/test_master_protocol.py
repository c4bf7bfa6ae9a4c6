"""The part-2 request shapes: what the daemon parses is what a client writes."""

from __future__ import annotations

from typing import Any

import pytest

from rpc_client import master_protocol as wire
from rpc_client.errors import BadRequest

REGISTER = {"uuid": "u", "name": "n1", "address": "10.0.0.1", "port": 1811, "boot_id": "b",
            "instance": "i", "pid": 7, "version": "1.2", "labels": ["a"],
            "functions": ["f"]}  # fmt: skip
EVENT = {"seq": 3, "type": "disk.x", "at": 1.5, "data": {"k": [1]}, "fnc_id": None}


@pytest.mark.parametrize(
    ("cls", "body"),
    [
        (wire.RegisterRequest, REGISTER),
        (wire.HeartbeatRequest, {"uuid": "u", "instance": "i", "running": 2}),
        (wire.ReportRequest, {"uuid": "u", "spool": "s", "events": [EVENT]}),
        (wire.WaitForEventsRequest, {"from": 4, "timeout": 2.5, "types": ["a.*"], "nodes": None}),
        (wire.WaitForEventsRequest, {"from": None, "timeout": 0, "types": None, "nodes": ["n"]}),
    ],
)
def test_requests_round_trip(cls: Any, body: dict[str, Any]) -> None:
    assert cls.from_wire(body).to_wire() == body


def test_labels_and_functions_may_be_left_out() -> None:
    bare = {k: v for k, v in REGISTER.items() if k not in ("labels", "functions")}
    request = wire.RegisterRequest.from_wire(bare)
    assert request.labels == () and request.functions == ()


@pytest.mark.parametrize("at", [None, "1", True, float("inf")])
def test_an_event_needs_a_finite_time(at: Any) -> None:
    with pytest.raises(BadRequest, match=r"events\[0\]\.at"):
        wire.ReportRequest.from_wire({"uuid": "u", "spool": "s", "events": [{**EVENT, "at": at}]})
