"""One causal timeline of an order, built (purely) from what the engine recorded about it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sandbox.logs import Invocation, group_invocations
from sandbox.trace.log_entries import api_entries, delivery_entries, idempotent_hits, notification_entries
from sandbox.trace.model import AuditMessage, Trace, TraceEntry, TraceSources, as_datetime
from sandbox.trace.saga_entries import saga_entries


def build_trace(sources: TraceSources) -> Trace:
    """The order's entries in time order (ties keep causal order), with its final status."""
    order_id = sources.order_id
    invocations = group_invocations(sources.log_lines)
    by_function: dict[str, list[Invocation]] = {}
    for invocation in invocations:
        by_function.setdefault(invocation.function, []).append(invocation)
    notes: list[str] = []
    api = api_entries(by_function.get("order-api", []), order_id)
    if not api and sources.order:
        api = [table_write_entry(sources.order)]
        notes.append("no order-api log line names this order: the request is not shown")
    deliveries = delivery_entries(by_function.get("outbox-publisher", []), order_id, sources.injections)
    if not deliveries:
        notes.append("no outbox-publisher log line names this order: no stream delivery seen yet")
    events = event_entries(sources.audit_messages, order_id, sources.rule_matches)
    if not events:
        notes.append("no event of this order in the audit queue (EventBridge events are read from it)")
    saga = execution_entries(sources, idempotent_hits(invocations, order_id))
    if sources.history is None:
        notes.append("the saga has not started: no execution is named after this order")
    notified = notification_entries(by_function.get("notifications", []), order_id)
    if not notified:
        notified = stored_notification_entries(sources.notifications)
    status = [status_entry(sources.order)] if sources.order and _is_final(sources.order) else []
    order = sources.order or {}
    return Trace(
        order_id=order_id,
        status=order.get("status"),
        failure_reason=order.get("failureReason"),
        saga_status=sources.saga_status,
        entries=sort_entries([*api, *deliveries, *events, *saga, *status, *notified]),
        notes=notes,
    )


def sort_entries(entries: Iterable[TraceEntry]) -> list[TraceEntry]:
    """Entries by time; entries at the same millisecond keep the (causal) order given."""
    return [entry for _, entry in sorted(enumerate(entries), key=lambda pair: (pair[1].at, pair[0]))]


def _is_final(order: dict[str, Any]) -> bool:
    return order.get("status") in ("COMPLETED", "FAILED")


def table_write_entry(order: dict[str, Any]) -> TraceEntry:
    """The order's transaction as the table tells it, when no log line does."""
    return TraceEntry(
        as_datetime(order["createdAt"]),
        "orders-table",
        "transaction",
        "TransactWriteItems",
        "ORDER# + OUTBOX# written (time from the order's createdAt)",
        status="SUCCEEDED",
    )


def stored_notification_entries(notifications: list[dict[str, Any]]) -> list[TraceEntry]:
    """The order's notifications as the table stores them, when no log line tells of them."""
    return [
        TraceEntry(
            as_datetime(note["sentAt"]),
            "notifications",
            "notification",
            note["type"],
            "stored (from the orders table; no notifications log line)",
            status="SENT",
        )
        for note in notifications
        if note.get("sentAt")
    ]


def execution_entries(sources: TraceSources, hits: list[tuple[str, datetime]]) -> list[TraceEntry]:
    """The saga named after the order, then each operator replay of it."""
    entries = saga_entries(sources.history, hits, sources.holds) if sources.history is not None else []
    for name, history in sources.replays:
        entries += [
            replace(
                entry, source="replay", detail=f"replay {name}" if entry.kind == "execution" else entry.detail
            )
            for entry in saga_entries(history, hits)
        ]
    return entries


def event_entries(
    messages: list[AuditMessage], order_id: str, rule_matches: dict[str, list[str]]
) -> list[TraceEntry]:
    """The order's EventBridge events (one per event id) and the rules each matched."""
    seen: set[str] = set()
    entries: list[TraceEntry] = []
    for message in sorted(messages, key=lambda item: item.sent_at):
        detail = message.event.get("detail") or {}
        event_id = str(message.event.get("id", ""))
        if not isinstance(detail, dict) or detail.get("orderId") != order_id or event_id in seen:
            continue
        seen.add(event_id)
        detail_type = str(message.event.get("detail-type", "?"))
        matched = rule_matches.get(detail_type)
        rules = "; ".join(matched) if matched else "no rule checked"
        entries.append(
            TraceEntry(
                message.sent_at,
                "eventbridge",
                "event",
                detail_type,
                f"event {event_id} on the bus; rules matched: {rules}",
                None,
                "PUT",
            )
        )
    return entries


def status_entry(order: dict[str, Any]) -> TraceEntry:
    """The conditional write that moved the order to its final status."""
    reason = order.get("failureReason")
    detail = f"PENDING → {order['status']}" + (f" ({reason})" if reason else "")
    at = as_datetime(order.get("updatedAt") or order["createdAt"])
    return TraceEntry(at, "orders-table", "status", str(order["status"]), detail, None, str(order["status"]))
