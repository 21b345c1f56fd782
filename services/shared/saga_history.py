"""Turns a Step Functions execution history into the saga's steps, as people read them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

# compensation state -> the forward state it undoes
COMPENSATION_OF = {
    "ReleaseInventory": "ReserveInventory",
    "RefundPayment": "ChargePayment",
    "CancelShipment": "CreateShipment",
}
_FAILURE_EVENTS = {"TaskFailed": "taskFailedEventDetails", "TaskTimedOut": "taskTimedOutEventDetails"}
# A step whose error no Catch handles ends the execution without a TaskStateExited event.
_EXECUTION_ENDS = {"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}


def _millis(start: Any, end: Any) -> int:
    return int((_as_datetime(end) - _as_datetime(start)).total_seconds() * 1000)


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def summarize_steps(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per Task state entered: name, status, attempts, durationMs, errors."""
    steps: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event in sorted(events, key=lambda e: int(e["id"])):
        kind = event["type"]
        if kind == "TaskStateEntered":
            name = event["stateEnteredEventDetails"]["name"]
            current = {
                "name": name,
                "status": "RUNNING",
                "attempts": 0,
                "durationMs": None,
                "isCompensation": name in COMPENSATION_OF,
                "errors": [],
                "_started": event["timestamp"],
            }
            steps.append(current)
        elif current is None:
            continue
        elif kind == "TaskScheduled":
            current["attempts"] += 1
            current["status"] = "RUNNING"
        elif kind in _FAILURE_EVENTS:
            details = event.get(_FAILURE_EVENTS[kind], {})
            current["errors"].append(details.get("error", kind))
            current["status"] = "RETRYING"
        elif kind == "TaskSucceeded":
            current["status"] = "SUCCEEDED"
        elif kind == "TaskStateExited" or kind in _EXECUTION_ENDS:
            if current["status"] != "SUCCEEDED":
                current["status"] = "FAILED"
            current["durationMs"] = _millis(current["_started"], event["timestamp"])
            current = None
    for step in steps:
        step.pop("_started")
    return steps


def compensations_run(steps: list[dict[str, Any]]) -> list[str]:
    """Names of the compensation steps in the order they ran."""
    return [step["name"] for step in steps if step["isCompensation"]]
