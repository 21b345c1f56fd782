"""The trace as a mermaid sequence diagram or plain text (the CLI styles its own; ``Trace.to_json`` is the JSON)."""

from __future__ import annotations

import re
from datetime import datetime

from sandbox.trace.model import Trace, TraceEntry

PARTICIPANTS = (
    ("Client", "Client"),
    ("API", "API"),
    ("OrdersTable", "Orders table"),
    ("Publisher", "Publisher"),
    ("EventBridge", "EventBridge"),
    ("Saga", "Saga"),
    ("Inventory", "Inventory"),
    ("Payment", "Payment"),
    ("Shipping", "Shipping"),
    ("Notifications", "Notifications"),
)
STATE_PARTICIPANTS = {
    "ReserveInventory": "Inventory",
    "ReleaseInventory": "Inventory",
    "ChargePayment": "Payment",
    "RefundPayment": "Payment",
    "CreateShipment": "Shipping",
    "CancelShipment": "Shipping",
}


def _mermaid_text(text: str) -> str:
    """Text safe inside a mermaid message: ``#`` as its entity code, no ``;`` (ends a statement), one line."""
    return re.sub(r"\s+", " ", text.replace("#", "#35;").replace(";", ",")).strip()


def render_mermaid(trace: Trace) -> str:
    """A mermaid sequence diagram of the trace, arrows in time order."""
    timed: list[tuple[datetime, int, int, str]] = []
    for seq, entry in enumerate(trace.entries):
        for index, (moment, line) in enumerate(_mermaid_lines(entry)):
            timed.append((moment, seq, index, line))
    timed.sort(key=lambda item: (item[0], item[1], item[2]))
    lines = ["sequenceDiagram", "    autonumber"]
    lines += [
        f"    participant {key} as {label}" if key != label else f"    participant {key}"
        for key, label in PARTICIPANTS
    ]
    lines += [f"    {line}" for _, _, _, line in timed]
    if trace.status:
        reason = f": {trace.failure_reason}" if trace.failure_reason else ""
        lines.append(f"    Note over Client,Notifications: order {_mermaid_text(trace.status + reason)}")
    return "\n".join(lines) + "\n"


def _took(entry: TraceEntry) -> str:
    return f" ({entry.duration_ms} ms)" if entry.duration_ms is not None else ""


def _mermaid_lines(entry: TraceEntry) -> list[tuple[datetime, str]]:
    """The diagram lines of one entry, each at the moment it happened."""
    text = _mermaid_text
    start, end = entry.at, entry.ends_at
    if entry.kind in ("request", "replay", "refused"):
        key = re.search(r"Idempotency-Key (\S+?):?(?:\s|$|\))", entry.detail)
        label = f"POST /orders (Idempotency-Key {key.group(1)})" if key else "POST /orders"
        answer = {
            "request": "order placed",
            "replay": "replayed first response, nothing written",
            "refused": entry.detail.split(": ", 1)[-1],
        }[entry.kind]
        arrow = "--x" if entry.kind == "refused" else "-->>"
        return [
            (start, f"Client->>API: {text(label)}"),
            (end, f"API{arrow}Client: {text(f'{entry.status} {answer}{_took(entry)}')}"),
        ]
    if entry.kind == "transaction":
        return [
            (start, f"API->>OrdersTable: {text('TransactWriteItems: ORDER + OUTBOX items' + _took(entry))}")
        ]
    if entry.kind == "delivery":
        arrow = "-x" if entry.status == "FAILED" else "->>"
        outcome = entry.detail.split(": ", 1)[-1]
        return [(start, f"OrdersTable{arrow}Publisher: {text(f'stream {entry.name}: {outcome}')}")]
    if entry.kind == "execution":
        return [(start, "Publisher->>Saga: StartExecution (name = order id)")]
    if entry.kind == "event":
        sender = "Publisher" if entry.name == "OrderPlaced" else "Saga"
        rules = entry.detail.split("rules matched: ", 1)[-1]
        return [
            (start, f"{sender}->>EventBridge: {text(entry.name)}"),
            (start, f"Note right of EventBridge: {text('matched ' + rules)}"),
        ]
    if entry.kind in ("state", "compensation"):
        target = STATE_PARTICIPANTS.get(entry.name, "OrdersTable")
        label = f"{entry.name} (compensation)" if entry.kind == "compensation" else entry.name
        arrow = "--x" if entry.status == "FAILED" else "-->>"
        outcome = entry.detail.split("; ")[-1] if entry.kind == "compensation" else entry.detail
        return [
            (start, f"Saga->>{target}: {text(label)}"),
            (end, f"{target}{arrow}Saga: {text(f'{entry.status}, {outcome}{_took(entry)}')}"),
        ]
    if entry.kind == "retry":
        target = STATE_PARTICIPANTS.get(entry.name, "OrdersTable")
        return [(start, f"Note over Saga,{target}: {text('retry: ' + entry.detail)}")]
    if entry.kind == "catch":
        return [(start, f"Note over Saga: {text(entry.detail)}")]
    if entry.kind == "execution-end":
        return [(start, f"Note over Saga: {text(f'execution {entry.status}')}")]
    if entry.kind == "status":
        return [(start, f"Note over OrdersTable: {text('status ' + entry.detail)}")]
    if entry.kind == "notification":
        return [
            (start, f"EventBridge->>Notifications: {text(f'{entry.name}: {entry.status}{_took(entry)}')}")
        ]
    return [(start, f"Note over Saga: {text(entry.name + ' ' + entry.detail)}")]


def render_text(trace: Trace) -> str:
    """The timeline as plain text, one entry a line (for assertion messages and logs; no styling)."""
    lines = [f"trace of order {trace.order_id}"]
    started = trace.started_at
    for entry in trace.entries:
        offset = round((entry.at - started).total_seconds() * 1000) if started else 0
        took = f"{entry.duration_ms} ms" if entry.duration_ms is not None else ""
        lines.append(
            f"  {offset:>+7} ms  {entry.source:<13} {entry.name:<30} {entry.status or '':<10} {took:>8}  {entry.detail}"
        )
    reason = f" — {trace.failure_reason}" if trace.failure_reason else ""
    lines.append(f"order {trace.status or 'UNKNOWN'}{reason}")
    lines += [f"note: {note}" for note in trace.notes]
    return "\n".join(lines) + "\n"
