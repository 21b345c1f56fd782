"""Timeline entries from what the functions logged, recognised by each line's ``trace_event``.

A line's message is for people and may be reworded; the trace reads only the structured fields.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.logs import Invocation, LogLine
from sandbox.trace.events import TraceEvent, trace_event_of
from sandbox.trace.model import TraceEntry


def _with_key(line: LogLine) -> str:
    key = line.fields.get("idempotency_key")
    return f"Idempotency-Key {key}" if key else "no Idempotency-Key"


def _transaction_entry(line: LogLine) -> TraceEntry:
    """The order's TransactWriteItems, started ``transaction_ms`` before its line was logged."""
    took = line.fields.get("transaction_ms")
    duration = round(float(took)) if isinstance(took, int | float) else None
    started = line.at - timedelta(milliseconds=duration or 0)
    return TraceEntry(
        started,
        "orders-table",
        "transaction",
        "TransactWriteItems",
        "ORDER# and OUTBOX# items written in one transaction",
        duration,
        "SUCCEEDED",
    )


def _order_api_entry(event: TraceEvent, line: LogLine, invocation: Invocation) -> TraceEntry | None:
    """What one order-api line of the order stands for: its transaction, the POST that placed it, or
    a replay of that POST; None for any other line."""
    if event == TraceEvent.ORDER_WRITTEN:
        return _transaction_entry(line)
    if event == TraceEvent.ORDER_PLACED:
        kind, detail = "request", f"order placed ({_with_key(line)})"
    elif event == TraceEvent.IDEMPOTENT_REPLAY:
        kind = "replay"
        detail = f"idempotent replay of {_with_key(line)}: first response returned, nothing written"
    else:
        return None
    return TraceEntry(
        invocation.started_at, "api", kind, "POST /orders", detail, invocation.duration_ms, "201"
    )


def api_entries(invocations: list[Invocation], order_id: str) -> list[TraceEntry]:
    """The POST that placed the order, its transaction, and every replay or refusal of its key."""
    entries: list[TraceEntry] = []
    keys: set[str] = set()
    for invocation in invocations:
        found: list[TraceEntry] = []
        for line in invocation.lines:
            event = trace_event_of(line.fields)
            if event is None or line.fields.get("order_id") != order_id:
                continue
            key = line.fields.get("idempotency_key")
            if key and event in (TraceEvent.ORDER_PLACED, TraceEvent.IDEMPOTENT_REPLAY):
                keys.add(str(key))
            entry = _order_api_entry(event, line, invocation)
            if entry is not None:
                found.append(entry)
        # The request began no later than what it did: the engine stamps a request's start from its
        # end minus its duration, which a busy engine may stamp late; the handler's own clock dates
        # its transaction.
        if found:
            began = min(entry.at for entry in found)
            requests = [replace(entry, at=began) for entry in found if entry.kind in ("request", "replay")]
            entries += requests + [entry for entry in found if entry.kind not in ("request", "replay")]
    return entries + refusal_entries(invocations, keys)


def refusal_entries(invocations: list[Invocation], keys: set[str]) -> list[TraceEntry]:
    """Requests refused over one of the order's keys (a refusal names the key, not the order)."""
    entries: list[TraceEntry] = []
    for invocation in invocations:
        for line in invocation.lines:
            key = line.fields.get("idempotency_key")
            if trace_event_of(line.fields) != TraceEvent.REQUEST_REFUSED or key not in keys:
                continue
            entries.append(
                TraceEntry(
                    invocation.started_at,
                    "api",
                    "refused",
                    "POST /orders",
                    f"Idempotency-Key {key}: {line.message}",
                    invocation.duration_ms,
                    str(line.fields.get("status_code") or "refused"),
                )
            )
    return entries


def _is_record_failure(line: LogLine) -> bool:
    """Powertools' line for a record its batch processor skips.

    That log call is inside the library, so it carries no ``trace_event``: it is the one
    publisher line of a record with an exception attached (Powertools logs it with ``exc_info``).
    """
    return trace_event_of(line.fields) is None and "exception_name" in line.fields


def _delivery_outcome(line: LogLine, *, is_first: bool) -> tuple[str, str] | None:
    """(status, what happened) for a publisher line about the delivery; None for other lines."""
    event = trace_event_of(line.fields)
    if event == TraceEvent.OUTBOX_PUBLISHED:
        if line.fields.get("saga_started"):
            return "SUCCEEDED", "OrderPlaced put, saga started"
        return (
            "SUCCEEDED",
            "OrderPlaced put again; saga already started (ExecutionAlreadyExists), not restarted",
        )
    if _is_record_failure(line):
        error = line.fields.get("exception_name") or "error"
        failure = f"record failed: {error}: {_last_line(line.fields.get('exception'))}"
        return "FAILED", failure if is_first else f"then {failure}"
    return None


# What an injected fault did to a delivery, said after how the publisher answered.
_INJECTED = {
    "crash": "then its worker was killed before it acknowledged",
    "duplicate-delivery": "then the stream delivered the batch again",
    "poison": "its record arrived unreadable",
    "delayed-delivery": "it was delivered late",
    "error-after": "then its answer was lost",
}
INJECTION_SLACK = timedelta(milliseconds=50)  # an injection is decided just before its invocation starts


def delivery_entries(
    invocations: list[Invocation], order_id: str, injections: list[dict[str, Any]] | None = None
) -> list[TraceEntry]:
    """Each stream delivery of the order's outbox record to the publisher, how it ended, and the
    fault the engine injected into it (an injection the publisher never ran for is a delivery too)."""
    entries: list[TraceEntry] = []
    for invocation in invocations:
        outcomes: list[str] = []
        status: str | None = None
        event_id = "?"
        for line in invocation.lines:
            if line.fields.get("correlation_id") != order_id:
                continue
            event_id = str(line.fields.get("stream_event_id", event_id))
            outcome = _delivery_outcome(line, is_first=not outcomes)
            if outcome is None:
                continue
            said, text = outcome
            outcomes.append(text)
            # A failure or crash is how the delivery ended, even after its record was published.
            status = (status or said) if said == "SUCCEEDED" else said
        if status is None:
            continue
        entries.append(
            TraceEntry(
                invocation.started_at,
                "stream",
                "delivery",
                "OUTBOX# record → publisher",
                f"stream event {event_id}: {'; '.join(outcomes)}",
                invocation.duration_ms,
                status,
            )
        )
    entries = _with_injections(entries, injections or [])
    total = len(entries)
    return [
        replace(entry, name=f"delivery {number} of {total}") for number, entry in enumerate(entries, start=1)
    ]


def _last_line(text: Any) -> str:
    lines = [line for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def idempotent_hits(invocations: list[Invocation], order_id: str) -> list[tuple[str, datetime]]:
    """(state name, when) of each step call that returned a stored result (Powertools idempotency)."""
    hits: list[tuple[str, datetime]] = []
    for invocation in invocations:
        for line in invocation.lines:
            if line.fields.get("correlation_id") == order_id and line.fields.get("idempotent_hit") is True:
                step = str(line.fields.get("step") or _status_step(line.fields.get("result")))
                hits.append((step, line.at))
    return hits


def _status_step(result: Any) -> str:
    """The final state a status step ran as (its lines name no step): MarkOrderCompleted or -Failed."""
    status = result.get("status", "") if isinstance(result, dict) else ""
    return f"MarkOrder{str(status).title()}"


def notification_entries(invocations: list[Invocation], order_id: str) -> list[TraceEntry]:
    """Each run of the notifications function for the order: sent, duplicate, or failed."""
    entries: list[TraceEntry] = []
    for invocation in invocations:
        lines = [line for line in invocation.lines if line.fields.get("correlation_id") == order_id]
        if not lines:
            continue
        received = _first(lines, TraceEvent.NOTIFICATION_RECEIVED)
        sent = _first(lines, TraceEvent.NOTIFICATION_SENT)
        detail_type = str((sent or received or lines[0]).fields.get("detail_type", "?"))
        if sent and sent.fields.get("is_new"):
            outcome, status = f"NOTIFICATION#{detail_type} stored", "SENT"
        elif sent:
            outcome, status = ("already sent for this event type: duplicate delivery ignored", "DUPLICATE")
        else:
            outcome, status = "failed before the notification was stored", "FAILED"
        event_id = (received.fields.get("event_id") if received else None) or "?"
        entries.append(
            TraceEntry(
                invocation.started_at,
                "notifications",
                "notification",
                detail_type,
                f"event {event_id}: {outcome}",
                invocation.duration_ms,
                status,
            )
        )
    return entries


def _first(lines: list[LogLine], event: TraceEvent) -> LogLine | None:
    return next((line for line in lines if trace_event_of(line.fields) == event), None)


def _with_injections(entries: list[TraceEntry], injections: list[dict[str, Any]]) -> list[TraceEntry]:
    """The deliveries with each injected fault said on the delivery it broke (matched by time)."""
    entries = sorted(entries, key=lambda entry: entry.at)
    taken: set[int] = set()
    for injection in sorted(injections, key=lambda entry: float(entry["at"])):
        at = datetime.fromtimestamp(float(injection["at"]), tz=UTC)
        said = f"injected {injection['kind']} (rule {injection['rule']})"
        index = next(
            (i for i, entry in enumerate(entries) if i not in taken and entry.at >= at - INJECTION_SLACK),
            None,
        )
        if (
            injection["kind"] not in _INJECTED or index is None
        ):  # the publisher never ran: a delivery of its own
            entries.append(
                TraceEntry(
                    at,
                    "stream",
                    "delivery",
                    "OUTBOX# record → publisher",
                    f"{said}: the publisher did not run",
                    None,
                    "FAILED",
                )
            )
            continue
        taken.add(index)
        entry = entries[index]
        status = "CRASHED" if injection["kind"] == "crash" else entry.status
        entries[index] = replace(
            entry, detail=f"{entry.detail}; {_INJECTED[injection['kind']]}: {said}", status=status
        )
    return sorted(entries, key=lambda entry: entry.at)
