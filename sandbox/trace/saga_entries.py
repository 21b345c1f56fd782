"""Timeline entries from the saga's execution history: states, retries, Catches, compensations."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sandbox.trace.model import TraceEntry, as_datetime, millis_between

# compensation state -> the forward state it undoes (as in the saga's ASL)
COMPENSATION_OF = {
    "ReleaseInventory": "ReserveInventory",
    "RefundPayment": "ChargePayment",
    "CancelShipment": "CreateShipment",
}
_FAILURE_DETAILS = {"TaskFailed": "taskFailedEventDetails", "TaskTimedOut": "taskTimedOutEventDetails"}
_EXECUTION_ENDS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


@dataclass
class _State:
    name: str
    entered: datetime
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    failure: tuple[datetime, str, str] | None = None  # when, error, message
    result: str | None = None
    is_succeeded: bool = False


def saga_entries(
    history: list[dict[str, Any]],
    hits: list[tuple[str, datetime]] | None = None,
    holds: list[dict[str, Any]] | None = None,
) -> list[TraceEntry]:
    """The execution: start, every state entered and exited, each retry and Catch, the end (and
    how long a debugger held a step, from the engine's ``holds``)."""
    hits = hits or []
    entries: list[TraceEntry] = []
    state: _State | None = None
    caught: tuple[datetime, str, str] | None = None  # when, failed state, error
    for event in sorted(history, key=lambda item: int(item["id"])):
        kind, at = event["type"], as_datetime(event["timestamp"])
        if kind == "ExecutionStarted":
            entries.append(
                TraceEntry(
                    at,
                    "saga",
                    "execution",
                    "StartExecution",
                    "execution named after the order id",
                    None,
                    "RUNNING",
                )
            )
        elif kind in ("TaskStateEntered", "FailStateEntered", "SucceedStateEntered", "PassStateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            if caught:
                when, failed, error = caught
                entries.append(TraceEntry(when, "saga", "catch", failed, f"Catch {error} → {name}"))
                caught = None
            state = _State(name, at) if kind == "TaskStateEntered" else None
        elif state is None:
            if kind in _EXECUTION_ENDS:
                entries.append(_execution_end(event, at))
        elif kind == "TaskScheduled":
            if state.failure:
                when, error, message = state.failure
                entries.append(
                    TraceEntry(
                        when,
                        "saga",
                        "retry",
                        state.name,
                        f"attempt {state.attempts} failed: {error}: {message}; retrying",
                        None,
                        "RETRIED",
                    )
                )
                state.failure = None
            state.attempts += 1
        elif kind in _FAILURE_DETAILS:
            details = event.get(_FAILURE_DETAILS[kind]) or {}
            error = str(details.get("error") or kind)
            state.errors.append(error)
            state.failure = (at, error, _cause_message(details.get("cause")))
        elif kind == "TaskSucceeded":
            state.is_succeeded = True
            state.result = _payload_status((event.get("taskSucceededEventDetails") or {}).get("output"))
        elif kind == "TaskStateExited" or kind in _EXECUTION_ENDS:
            within = [when for name, when in hits if name == state.name and state.entered <= when <= at]
            entry = _state_entry(state, at, len(within))
            held = [
                float(hold["heldSeconds"])
                for hold in holds or []
                if hold.get("state") == state.name
                and state.entered.timestamp() <= float(hold["startedAt"]) <= at.timestamp()
            ]
            if held:
                entry = replace(entry, detail=f"{entry.detail}; held in debugger {sum(held):.1f} s")
            entries.append(entry)
            if not state.is_succeeded and state.failure and kind == "TaskStateExited":
                caught = (at, state.name, state.failure[1])
            state = None
            if kind in _EXECUTION_ENDS:
                entries.append(_execution_end(event, at))
    return entries


def _state_entry(state: _State, exited: datetime, hits: int) -> TraceEntry:
    tries = f"{state.attempts} attempt{'s' if state.attempts != 1 else ''}"
    if state.is_succeeded:
        outcome = f"{tries}, result {state.result}" if state.result else tries
        status = "SUCCEEDED"
    else:
        _, error, message = state.failure or (exited, "failed", "")
        outcome = f"{tries}, {error}: {message}" if message else f"{tries}, {error}"
        status = "FAILED"
    if hits:
        outcome += "; idempotent hit: the stored result was returned, nothing ran again"
    is_compensation = state.name in COMPENSATION_OF
    if is_compensation:
        outcome = f"compensation of {COMPENSATION_OF[state.name]}; {outcome}"
    kind = "compensation" if is_compensation else "state"
    return TraceEntry(
        state.entered, "saga", kind, state.name, outcome, millis_between(state.entered, exited), status
    )


def _execution_end(event: dict[str, Any], at: datetime) -> TraceEntry:
    status = _EXECUTION_ENDS[event["type"]]
    details: dict[str, Any] = {}
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            details = value
    error = details.get("error")
    return TraceEntry(
        at, "saga", "execution-end", event["type"], f"error {error}" if error else "", None, status
    )


def _cause_message(cause: Any) -> str:
    """A Lambda error's message from its JSON cause (or the cause as it is)."""
    try:
        parsed = json.loads(cause) if isinstance(cause, str) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return str(cause or "")


def _payload_status(output: Any) -> str | None:
    try:
        payload = json.loads(output).get("Payload") if isinstance(output, str) else None
    except (ValueError, AttributeError):
        return None
    return str(payload["status"]) if isinstance(payload, dict) and "status" in payload else None
