"""One causal timeline of an order, from what the engine recorded: logs, saga history, audit queue, tables.

``collect_sources`` reads the engine; ``build_trace`` (pure) turns what it read into time-ordered
entries; ``render_mermaid`` draws them as a sequence diagram.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from sandbox.errors import OrderError
from sandbox.items import plain_item
from sandbox.logs import (
    Invocation,
    LogLine,
    from_millis,
    function_names,
    group_invocations,
    iso,
    read_lines,
)
from sandbox.saga import execution_arn, executions_of
from sandbox.settings import Settings
from sandbox.stack import LocalStack

# compensation state -> the forward state it undoes (as in the saga's ASL)
COMPENSATION_OF = {
    "ReleaseInventory": "ReserveInventory",
    "RefundPayment": "ChargePayment",
    "CancelShipment": "CreateShipment",
}
# Logs are read from a little before the order was written: the request that wrote it started earlier.
LOG_LEAD = timedelta(seconds=30)
AUDIT_PEEK_SECONDS = 30  # how long a peeked audit message stays hidden if the trace dies mid-read
AUDIT_PEEK_LIMIT = 10_000
_FAILURE_DETAILS = {"TaskFailed": "taskFailedEventDetails", "TaskTimedOut": "taskTimedOutEventDetails"}
_EXECUTION_ENDS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}
_BATCH_FAILURE = "Record processing exception; skipping this record"  # Powertools' message


class OrderNotFoundError(OrderError):
    """The engine has no record of the order."""


@dataclass(frozen=True)
class TraceEntry:
    """One thing that happened to the order."""

    at: datetime
    source: str
    kind: str
    name: str
    detail: str = ""
    duration_ms: int | None = None
    status: str | None = None

    @property
    def ends_at(self) -> datetime:
        return self.at + timedelta(milliseconds=self.duration_ms or 0)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "at": iso(self.at),
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "detail": self.detail,
        }
        if self.duration_ms is not None:
            entry["durationMs"] = self.duration_ms
        if self.status is not None:
            entry["status"] = self.status
        return entry


@dataclass(frozen=True)
class Trace:
    """An order's timeline, its final status and what the sources could not tell."""

    order_id: str
    status: str | None
    failure_reason: str | None
    saga_status: str | None
    entries: list[TraceEntry]
    notes: list[str] = field(default_factory=list)

    @property
    def started_at(self) -> datetime | None:
        return self.entries[0].at if self.entries else None

    @property
    def duration_ms(self) -> int | None:
        if not self.entries:
            return None
        end = max(entry.ends_at for entry in self.entries)
        return _millis(self.entries[0].at, end)

    def to_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "status": self.status,
            "failureReason": self.failure_reason,
            "sagaStatus": self.saga_status,
            "startedAt": iso(self.started_at) if self.started_at else None,
            "durationMs": self.duration_ms,
            "entries": [entry.to_json() for entry in self.entries],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class AuditMessage:
    """An EventBridge event as the audit queue received it."""

    event: dict[str, Any]
    sent_at: datetime


@dataclass
class TraceSources:
    """What the engine recorded about one order."""

    order_id: str
    order: dict[str, Any] | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] | None = None
    saga_status: str | None = None
    log_lines: list[LogLine] = field(default_factory=list)
    audit_messages: list[AuditMessage] = field(default_factory=list)
    # detail-type -> "rule → target" for every rule on the bus whose pattern matches it
    rule_matches: dict[str, list[str]] = field(default_factory=dict)
    # (execution name, history) of operator replays of the saga (`sandbox order --replay`)
    replays: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)


def _millis(start: datetime, end: datetime) -> int:
    return round((end - start).total_seconds() * 1000)


def _as_datetime(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _short_id(text: str) -> str:
    return text[:8]


# ------------------------------------------------------------------ building the timeline


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
        created = _as_datetime(sources.order["createdAt"])
        api = [
            TraceEntry(
                created,
                "orders-table",
                "transaction",
                "TransactWriteItems",
                "ORDER# + OUTBOX# written (time from the order's createdAt)",
                status="SUCCEEDED",
            )
        ]
        notes.append("no order-api log line names this order: the request is not shown")
    deliveries = delivery_entries(by_function.get("outbox-publisher", []), order_id)
    if not deliveries:
        notes.append("no outbox-publisher log line names this order: no stream delivery seen yet")
    events = event_entries(sources.audit_messages, order_id, sources.rule_matches)
    if not events:
        notes.append("no event of this order in the audit queue (EventBridge events are read from it)")
    hits = idempotent_hits(invocations, order_id)
    saga = saga_entries(sources.history, hits) if sources.history is not None else []
    if sources.history is None:
        notes.append("the saga has not started: no execution is named after this order")
    for name, history in sources.replays:
        saga += [
            replace(
                entry, source="replay", detail=f"replay {name}" if entry.kind == "execution" else entry.detail
            )
            for entry in saga_entries(history, hits)
        ]
    notified = notification_entries(by_function.get("notifications", []), order_id)
    if not notified:
        notified = [
            TraceEntry(
                _as_datetime(note["sentAt"]),
                "notifications",
                "notification",
                note["type"],
                "stored (from the orders table; no notifications log line)",
                status="SENT",
            )
            for note in sources.notifications
            if note.get("sentAt")
        ]
    status = [status_entry(sources.order)] if sources.order and _is_final(sources.order) else []
    ordered = [*api, *deliveries, *events, *saga, *status, *notified]
    entries = sort_entries(ordered)
    order = sources.order or {}
    return Trace(
        order_id=order_id,
        status=order.get("status"),
        failure_reason=order.get("failureReason"),
        saga_status=sources.saga_status,
        entries=entries,
        notes=notes,
    )


def sort_entries(entries: Iterable[TraceEntry]) -> list[TraceEntry]:
    """Entries by time; entries at the same millisecond keep the (causal) order given."""
    return [entry for _, entry in sorted(enumerate(entries), key=lambda pair: (pair[1].at, pair[0]))]


def _is_final(order: dict[str, Any]) -> bool:
    return order.get("status") in ("COMPLETED", "FAILED")


def api_entries(invocations: list[Invocation], order_id: str) -> list[TraceEntry]:
    """The POST that placed the order, its transaction, and every replay or refusal of its key."""
    entries: list[TraceEntry] = []
    keys: set[str] = set()
    for invocation in invocations:
        for line in invocation.lines:
            if line.fields.get("order_id") != order_id:
                continue
            key = line.fields.get("idempotency_key")
            with_key = f"Idempotency-Key {key}" if key else "no Idempotency-Key"
            if line.message == "order and outbox written":
                took = line.fields.get("transaction_ms")
                duration = round(float(took)) if isinstance(took, int | float) else None
                started = line.at - timedelta(milliseconds=duration or 0)
                entries.append(
                    TraceEntry(
                        started,
                        "orders-table",
                        "transaction",
                        "TransactWriteItems",
                        "ORDER# and OUTBOX# items written in one transaction",
                        duration,
                        "SUCCEEDED",
                    )
                )
            elif line.message == "order placed":
                if key:
                    keys.add(str(key))
                entries.append(
                    TraceEntry(
                        invocation.started_at,
                        "api",
                        "request",
                        "POST /orders",
                        f"order placed ({with_key})",
                        invocation.duration_ms,
                        "201",
                    )
                )
            elif line.message == "idempotent replay":
                if key:
                    keys.add(str(key))
                entries.append(
                    TraceEntry(
                        invocation.started_at,
                        "api",
                        "replay",
                        "POST /orders",
                        f"idempotent replay of {with_key}: first response returned, nothing written",
                        invocation.duration_ms,
                        "201",
                    )
                )
    for invocation in invocations:
        for line in invocation.lines:
            if line.fields.get("idempotency_key") in keys and "order_id" not in line.fields:
                is_mismatch = "another body" in line.message
                entries.append(
                    TraceEntry(
                        invocation.started_at,
                        "api",
                        "refused",
                        "POST /orders",
                        f"Idempotency-Key {line.fields['idempotency_key']}: {line.message}",
                        invocation.duration_ms,
                        "422" if is_mismatch else "409",
                    )
                )
    return entries


def delivery_entries(invocations: list[Invocation], order_id: str) -> list[TraceEntry]:
    """Each stream delivery of the order's outbox record to the publisher, and how it ended."""
    entries: list[TraceEntry] = []
    for invocation in invocations:
        outcomes: list[str] = []
        status: str | None = None
        event_id = "?"
        for line in invocation.lines:
            if line.fields.get("correlation_id") != order_id:
                continue
            event_id = str(line.fields.get("stream_event_id", event_id))
            if line.message == "outbox record published":
                outcomes.append(
                    "OrderPlaced put, saga started"
                    if line.fields.get("saga_started")
                    else "OrderPlaced put again; saga already started (ExecutionAlreadyExists), not restarted"
                )
                status = status or "SUCCEEDED"
            elif line.message == _BATCH_FAILURE:
                error = line.fields.get("exception_name") or "error"
                failure = f"record failed: {error}: {_last_line(line.fields.get('exception'))}"
                outcomes.append(f"then {failure}" if outcomes else failure)
                status = "FAILED"
            elif line.message.startswith("injected crash"):
                outcomes.append("then the publisher died before acknowledging")
                status = "CRASHED"
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
    total = len(entries)
    return [
        replace(entry, name=f"delivery {number} of {total}") for number, entry in enumerate(entries, start=1)
    ]


def _last_line(text: Any) -> str:
    lines = [line for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def event_entries(
    messages: list[AuditMessage], order_id: str, rule_matches: dict[str, list[str]]
) -> list[TraceEntry]:
    """The order's EventBridge events (one per event id) and the rules each matched."""
    seen: dict[str, int] = {}
    entries: list[TraceEntry] = []
    for message in sorted(messages, key=lambda item: item.sent_at):
        detail = message.event.get("detail") or {}
        if not isinstance(detail, dict) or detail.get("orderId") != order_id:
            continue
        event_id = str(message.event.get("id", ""))
        if event_id in seen:
            seen[event_id] += 1
            continue
        seen[event_id] = 1
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
    status = result.get("status", "") if isinstance(result, dict) else ""
    return f"MarkOrder{str(status).title()}"


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
    history: list[dict[str, Any]], hits: list[tuple[str, datetime]] | None = None
) -> list[TraceEntry]:
    """The execution: start, every state entered and exited, each retry and Catch, the end."""
    hits = hits or []
    entries: list[TraceEntry] = []
    state: _State | None = None
    caught: tuple[datetime, str, str] | None = None  # when, failed state, error
    for event in sorted(history, key=lambda item: int(item["id"])):
        kind, at = event["type"], _as_datetime(event["timestamp"])
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
            entries.append(_state_entry(state, at, len(within)))
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
        state.entered, "saga", kind, state.name, outcome, _millis(state.entered, exited), status
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


def notification_entries(invocations: list[Invocation], order_id: str) -> list[TraceEntry]:
    """Each run of the notifications function for the order: sent, duplicate, or failed."""
    entries: list[TraceEntry] = []
    for invocation in invocations:
        lines = [line for line in invocation.lines if line.fields.get("correlation_id") == order_id]
        if not lines:
            continue
        received = next((line for line in lines if line.message == "event received"), None)
        sent = next((line for line in lines if line.message == "notification"), None)
        detail_type = str((sent or received or lines[0]).fields.get("detail_type", "?"))
        if sent and sent.fields.get("is_new"):
            outcome, status = f"NOTIFICATION#{detail_type} stored", "SENT"
        elif sent:
            outcome, status = "already sent for this event type: duplicate delivery ignored", "DUPLICATE"
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


def status_entry(order: dict[str, Any]) -> TraceEntry:
    """The conditional write that moved the order to its final status."""
    reason = order.get("failureReason")
    detail = f"PENDING → {order['status']}" + (f" ({reason})" if reason else "")
    at = _as_datetime(order.get("updatedAt") or order["createdAt"])
    return TraceEntry(at, "orders-table", "status", str(order["status"]), detail, None, str(order["status"]))


# ------------------------------------------------------------------ mermaid

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


# ------------------------------------------------------------------ reading the engine


def read_order_items(
    dynamodb: Any, table: str, order_id: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The ORDER# item and its NOTIFICATION# items."""
    response = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ORDER#{order_id}"}},
        ConsistentRead=True,
    )
    items = [plain_item(item) for item in response.get("Items", [])]
    order = next((item for item in items if item.get("sk") == "ORDER"), None)
    notifications = [
        {"type": item["sk"].removeprefix("NOTIFICATION#"), "sentAt": item.get("sentAt")}
        for item in items
        if str(item.get("sk", "")).startswith("NOTIFICATION#")
    ]
    return order, notifications


def read_history(sfn: Any, arn: str) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The execution's status and full history; (None, None) when it does not exist."""
    try:
        status = sfn.describe_execution(executionArn=arn)["status"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ExecutionDoesNotExist":
            return None, None
        raise
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return str(status), events


def peek_messages(sqs: Any, queue_url: str, *, limit: int = AUDIT_PEEK_LIMIT) -> list[AuditMessage]:
    """Every message in the queue, left in it.

    ``VisibilityTimeout=0`` would only ever return the same first ten messages, so the batches
    are hidden while they are read and made visible again at once afterwards. Side effects: each
    message's receive count goes up by one, and a concurrent consumer would not see them for that
    moment (nothing consumes the audit queue in the sandbox).
    """
    received: list[dict[str, Any]] = []
    try:
        while len(received) < limit:
            batch = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=AUDIT_PEEK_SECONDS,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            if not batch:
                break
            received.extend(batch)
    finally:
        for start in range(0, len(received), 10):
            chunk = received[start : start + 10]
            sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                    for index, message in enumerate(chunk)
                ],
            )
    messages = []
    for message in received:
        try:
            event = json.loads(message["Body"])
        except ValueError:
            continue
        sent = int((message.get("Attributes") or {}).get("SentTimestamp", 0))
        if isinstance(event, dict):
            messages.append(AuditMessage(event, from_millis(sent)))
    return messages


def _resource_label(arn: str, functions: dict[str, str]) -> str:
    """A rule target as people name it: the function's short name, or the queue's name."""
    name = arn.rsplit(":", 1)[-1]
    short = {physical: service for service, physical in functions.items()}
    if ":function:" in arn:
        return f"{short.get(name, name)} function"
    if ":sqs:" in arn:
        return f"{name} queue"
    return name


def _rule_label(rule_name: str, stack_name: str) -> str:
    """``saga-sandbox-AuditRule-6B961D5A73579`` -> ``AuditRule``."""
    match = re.match(rf"^{re.escape(stack_name)}-(.+)-[A-Z0-9]{{8,}}$", rule_name)
    return match.group(1) if match else rule_name


def match_rules(
    events_client: Any,
    bus: str,
    stack_name: str,
    samples: dict[str, dict[str, Any]],
    functions: dict[str, str],
) -> dict[str, list[str]]:
    """For one sample event per detail-type: the bus's rules that match it, with their targets."""
    rules: list[dict[str, Any]] = []
    for page in events_client.get_paginator("list_rules").paginate(EventBusName=bus):
        rules.extend(rule for rule in page["Rules"] if rule.get("EventPattern"))
    targets = {
        rule["Name"]: [
            _resource_label(target["Arn"], functions)
            for target in events_client.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        ]
        for rule in rules
    }
    matches: dict[str, list[str]] = {}
    for detail_type, event in samples.items():
        matched = []
        for rule in rules:
            result = events_client.test_event_pattern(
                EventPattern=rule["EventPattern"], Event=json.dumps(event)
            )
            if result.get("Result"):
                label = _rule_label(rule["Name"], stack_name)
                matched.append(f"{label} → {', '.join(targets[rule['Name']]) or 'no target'}")
        matches[detail_type] = matched
    return matches


def collect_sources(stack: LocalStack, settings: Settings, order_id: str) -> TraceSources:
    """Read everything the engine recorded about the order."""
    region = settings.region
    outputs = stack.outputs
    order, notifications = read_order_items(
        stack.client("dynamodb", region), outputs["OrdersTableName"], order_id
    )
    saga_status, history = read_history(
        stack.client("stepfunctions", region), execution_arn(outputs["StateMachineArn"], order_id)
    )
    if order is None and history is None:
        raise OrderNotFoundError(
            f"order {order_id} not found: no ORDER# item in {outputs['OrdersTableName']} and no saga execution",
            hint="list recent orders with `sandbox orders`",
        )
    sources = TraceSources(order_id, order, notifications, history, saga_status)
    sfn = stack.client("stepfunctions", region)
    for execution in executions_of(stack, region, order_id):
        if execution["name"] != order_id:
            _status, replay_history = read_history(sfn, execution["executionArn"])
            sources.replays.append((execution["name"], replay_history or []))
    functions = function_names(
        stack.client("cloudformation", region), stack.client("lambda", region), settings.stack_name
    )
    since = _as_datetime(order["createdAt"]) - LOG_LEAD if order else None
    start_ms = int(since.timestamp() * 1000) if since else None
    # Unfiltered: a refused replay of the order's Idempotency-Key does not name the order.
    sources.log_lines = read_lines(stack.client("logs", region), functions, start_ms=start_ms)
    audit = peek_messages(stack.client("sqs", region), outputs["AuditQueueUrl"])
    sources.audit_messages = [
        message for message in audit if (message.event.get("detail") or {}).get("orderId") == order_id
    ]
    samples = {str(message.event.get("detail-type")): message.event for message in sources.audit_messages}
    sources.rule_matches = match_rules(
        stack.client("events", region), outputs["EventBusName"], settings.stack_name, samples, functions
    )
    return sources


def trace_order(stack: LocalStack, settings: Settings, order_id: str) -> Trace:
    """The order's causal timeline, read from the running engine."""
    return build_trace(collect_sources(stack, settings, order_id))
