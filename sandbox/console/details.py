"""What each state of an order's saga saw: its input, output, attempts and errors, from the history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.json_text import parse_json
from sandbox.logs import iso


def _moment(value: Any) -> str:
    return iso(value) if isinstance(value, datetime) else str(value)


def state_visits(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per state entered, in order: name, times, input, output, attempts, errors, result.

    ``errors`` holds each failed attempt's error and cause; ``result`` the last task result.
    """
    visits: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event in sorted(history, key=lambda e: int(e["id"])):
        kind = str(event["type"])
        if kind.endswith("StateEntered"):
            details = event.get("stateEnteredEventDetails", {})
            current = {
                "name": details.get("name"),
                "type": kind.removesuffix("StateEntered"),
                "enteredAt": _moment(event["timestamp"]),
                "exitedAt": None,
                "input": parse_json(details.get("input")),
                "output": None,
                "attempts": 0,
                "errors": [],
                "result": None,
            }
            visits.append(current)
        elif current is None:
            continue
        elif kind == "TaskScheduled":
            current["attempts"] += 1
        elif kind in ("TaskFailed", "TaskTimedOut", "ExecutionFailed"):
            details = event.get(f"{kind[0].lower()}{kind[1:]}EventDetails", {})
            current["errors"].append(
                {"error": details.get("error", kind), "cause": parse_json(details.get("cause"))}
            )
        elif kind == "TaskSucceeded":
            current["result"] = parse_json(event.get("taskSucceededEventDetails", {}).get("output"))
        elif kind.endswith("StateExited"):
            current["exitedAt"] = _moment(event["timestamp"])
            current["output"] = parse_json(event.get("stateExitedEventDetails", {}).get("output"))
            current = None
    return visits
