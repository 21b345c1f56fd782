"""An order's timeline from hand-written engine records: ordering, retries, Catch, replays, mermaid."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.logs import LogLine, group_invocations, parse_events
from sandbox.saga import execution_arn
from sandbox.trace import (
    AuditMessage,
    CatchRoute,
    TraceEntry,
    TraceEvent,
    TraceSources,
    build_execution_trace,
    build_trace,
    render_execution_text,
    render_mermaid,
    saga_entries,
    sort_entries,
)
from sandbox.trace.execution import function_name_of, function_of_state
from shared.trace_events import TraceEvent as FunctionsTraceEvent

ORDER = "7969a884-02dd-4548-8493-516227f2c5b4"
T0 = datetime(2026, 11, 23, 0, 20, 41, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def ms(moment_ms: int) -> int:
    return int(at(moment_ms).timestamp() * 1000)


class History:
    """A Step Functions history as get_execution_history returns it (ids from 1)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, when: int, **details: Any) -> History:
        self.events.append({"id": len(self.events) + 1, "type": kind, "timestamp": at(when), **details})
        return self

    def task(
        self, name: str, entered: int, *attempts: tuple[int, str | None], result: str | None = None
    ) -> History:
        """A Task state: each attempt ends at a time, failing with an error or (None) succeeding."""
        self.add("TaskStateEntered", entered, stateEnteredEventDetails={"name": name})
        start = entered
        for ended, error in attempts:
            self.add("TaskScheduled", start)
            if error:
                cause = json.dumps({"errorMessage": f"{error} in {name}", "errorType": error})
                self.add("TaskFailed", ended, taskFailedEventDetails={"error": error, "cause": cause})
            else:
                output = json.dumps({"StatusCode": 200, "Payload": {"status": result}})
                self.add("TaskSucceeded", ended, taskSucceededEventDetails={"output": output})
            start = ended + 10
        return self.add("TaskStateExited", attempts[-1][0], stateExitedEventDetails={"name": name})


def fail_shipping_history() -> list[dict[str, Any]]:
    """ReserveInventory, ChargePayment (one transient retry), CreateShipment fails (`--fail shipping`), and
    the compensations of all three."""
    return (
        History()
        .add("ExecutionStarted", 40)
        .task("ReserveInventory", 100, (120, None), result="RESERVED")
        .task("ChargePayment", 120, (150, "TransientStepError"), (200, None), result="CHARGED")
        .task("CreateShipment", 200, (260, "InjectedFault"))
        .task("CancelShipment", 260, (275, None), result="NOTHING_TO_CANCEL")
        .task("RefundPayment", 275, (290, None), result="REFUNDED")
        .task("ReleaseInventory", 290, (310, None), result="RELEASED")
        .task("MarkOrderFailed", 310, (370, None), result="FAILED")
        .add("FailStateEntered", 370, stateEnteredEventDetails={"name": "OrderFailed"})
        .add("ExecutionFailed", 371, executionFailedEventDetails={"error": "OrderFailed"})
        .events
    )


def powertools(message: str, when: int, request_id: str, level: str = "INFO", **extra: Any) -> str:
    moment = at(when)
    stamp = moment.strftime("%Y-%m-%d %H:%M:%S,") + f"{moment.microsecond // 1000:03d}+0000"
    return json.dumps(
        {"level": level, "message": message, "timestamp": stamp, "function_request_id": request_id, **extra}
    )


def request(function: str, request_id: str, body: list[str], *, ended: int, duration: int) -> list[LogLine]:
    """One request's log lines, stamped at its end as the engine does."""
    lines = [f"START RequestId: {request_id} Version: $LATEST", *body, f"END RequestId: {request_id}",
             f"REPORT RequestId: {request_id}\tDuration: {duration} ms"]  # fmt: skip
    events = [{"timestamp": ms(ended), "message": line, "logStreamName": request_id} for line in lines]
    return parse_events(function, events)


def log_lines() -> list[LogLine]:
    """What the functions logged for the order: placed, two stream deliveries, a notification, a replay."""
    return [
        *request("order-api", "api-1", [
            powertools("order and outbox written", 25, "api-1", trace_event=TraceEvent.ORDER_WRITTEN,
                       order_id=ORDER, transaction_ms=12.4, items=[f"ORDER#{ORDER}", f"OUTBOX#{ORDER}"]),
            powertools("order placed", 26, "api-1", trace_event=TraceEvent.ORDER_PLACED, order_id=ORDER,
                       idempotency_key="k1"),
        ], ended=30, duration=30),
        *request("outbox-publisher", "pub-1", [
            powertools("outbox record published", 45, "pub-1", trace_event=TraceEvent.OUTBOX_PUBLISHED,
                       correlation_id=ORDER, saga_started=True, stream_event_id="ev-1"),
        ], ended=50, duration=15),
        *request("outbox-publisher", "pub-2", [
            powertools("outbox record published", 500, "pub-2", trace_event=TraceEvent.OUTBOX_PUBLISHED,
                       correlation_id=ORDER, saga_started=False, stream_event_id="ev-1"),
        ], ended=505, duration=10),
        *request("notifications", "note-1", [
            powertools("event received", 390, "note-1", trace_event=TraceEvent.NOTIFICATION_RECEIVED,
                       correlation_id=ORDER, detail_type="OrderFailed", event_id="eb-2"),
            powertools("notification", 395, "note-1", trace_event=TraceEvent.NOTIFICATION_SENT,
                       correlation_id=ORDER, detail_type="OrderFailed", is_new=True),
        ], ended=400, duration=20),
        *request("order-api", "api-2", [
            powertools("idempotent replay", 900, "api-2", trace_event=TraceEvent.IDEMPOTENT_REPLAY,
                       order_id=ORDER, idempotency_key="k1"),
        ], ended=905, duration=8),
        *request("order-api", "api-3", [
            powertools("idempotency key reused with another body", 950, "api-3", "WARNING",
                       trace_event=TraceEvent.REQUEST_REFUSED, status_code=422, idempotency_key="k1"),
        ], ended=955, duration=6),
        *request("order-api", "api-other", [
            powertools("order placed", 960, "api-other", trace_event=TraceEvent.ORDER_PLACED,
                       order_id="another-order", idempotency_key="k9"),
        ], ended=965, duration=6),
    ]  # fmt: skip


def audit(detail_type: str, event_id: str, sent: int, order_id: str = ORDER) -> AuditMessage:
    event = {"id": event_id, "detail-type": detail_type, "source": "saga-sandbox.orders",
             "detail": {"orderId": order_id}}  # fmt: skip
    return AuditMessage(event, at(sent))


def sources() -> TraceSources:
    return TraceSources(
        order_id=ORDER,
        order={"orderId": ORDER, "status": "FAILED", "createdAt": at(13).isoformat(),
               "updatedAt": at(340).isoformat(), "failureReason": "InjectedFault: InjectedFault in CreateShipment"},
        notifications=[{"type": "OrderFailed", "sentAt": at(360).isoformat()}],
        history=fail_shipping_history(),
        saga_status="FAILED",
        log_lines=log_lines(),
        audit_messages=[audit("OrderPlaced", "eb-1", 38), audit("OrderFailed", "eb-2", 360),
                        audit("OrderPlaced", "eb-3", 502), audit("OrderFailed", "eb-2", 361),
                        audit("OrderPlaced", "eb-x", 39, order_id="another-order")],
        rule_matches={"OrderPlaced": ["AuditRule → audit queue"],
                      "OrderFailed": ["AuditRule → audit queue", "Outcome → notifications function"]},
    )  # fmt: skip


def names(entries: list[TraceEntry]) -> list[tuple[str, str]]:
    return [(entry.kind, entry.name) for entry in entries]


# ---------------------------------------------------------------- the saga


def test_saga_entries_show_states_retries_the_catch_and_compensations() -> None:
    entries = saga_entries(fail_shipping_history())
    assert names(sort_entries(entries)) == [
        ("execution", "StartExecution"),
        ("state", "ReserveInventory"),
        ("state", "ChargePayment"),
        ("retry", "ChargePayment"),
        ("state", "CreateShipment"),
        ("catch", "CreateShipment"),
        ("compensation", "CancelShipment"),
        ("compensation", "RefundPayment"),
        ("compensation", "ReleaseInventory"),
        ("state", "MarkOrderFailed"),
        ("execution-end", "ExecutionFailed"),
    ]
    by_name = {(entry.kind, entry.name): entry for entry in entries}
    charge = by_name[("state", "ChargePayment")]
    assert (charge.status, charge.duration_ms, charge.detail) == (
        "SUCCEEDED",
        80,
        "2 attempts, result CHARGED",
    )
    retry = by_name[("retry", "ChargePayment")]
    assert retry.at == at(150)
    assert retry.detail == (
        "attempt 1 failed: TransientStepError: TransientStepError in ChargePayment; retrying"
    )
    shipment = by_name[("state", "CreateShipment")]
    assert (shipment.status, shipment.detail) == (
        "FAILED",
        "1 attempt, InjectedFault: InjectedFault in CreateShipment",
    )
    assert by_name[("catch", "CreateShipment")].detail == "Catch InjectedFault → CancelShipment"
    assert by_name[("compensation", "CancelShipment")].detail.startswith("compensation of CreateShipment")
    assert by_name[("compensation", "RefundPayment")].detail.startswith("compensation of ChargePayment")


def test_a_state_whose_error_no_catch_handles_ends_with_the_execution() -> None:
    history = (
        History()
        .add("ExecutionStarted", 0)
        .add("TaskStateEntered", 10, stateEnteredEventDetails={"name": "ReserveInventory"})
        .add("TaskScheduled", 10)
        .add("TaskFailed", 30, taskFailedEventDetails={"error": "Boom", "cause": "not json"})
        .add("ExecutionFailed", 31, executionFailedEventDetails={"error": "Boom"})
        .events
    )
    entries = saga_entries(history)
    assert names(entries)[-2:] == [("state", "ReserveInventory"), ("execution-end", "ExecutionFailed")]
    assert entries[-2].status == "FAILED" and entries[-2].detail == "1 attempt, Boom: not json"
    assert entries[-1].detail == "error Boom"


def test_idempotent_hits_of_a_step_are_said_when_they_happened_in_the_state() -> None:
    # GIVEN a stored-result hit of ReserveInventory while the state ran, and one of ChargePayment long after
    hits = [("ReserveInventory", at(110)), ("ChargePayment", at(5000))]
    entries = {entry.name: entry for entry in saga_entries(fail_shipping_history(), hits)}
    # THEN only the state that got the hit says so
    assert "idempotent hit" in entries["ReserveInventory"].detail
    assert "idempotent hit" not in entries["ChargePayment"].detail


def test_a_step_a_debugger_held_says_how_long() -> None:
    # GIVEN the engine's record of a debugger holding ChargePayment's invocation for 41.2 s
    holds = [{"state": "ChargePayment", "startedAt": at(130).timestamp(), "heldSeconds": 41.2}]
    entries = {entry.name: entry for entry in saga_entries(fail_shipping_history(), None, holds)}
    # THEN that step says so, and no other
    assert entries["ChargePayment"].detail.endswith("; held in debugger 41.2 s")
    assert "held" not in entries["ReserveInventory"].detail


# ---------------------------------------------------------------- the whole timeline


def test_the_timeline_follows_the_order_from_request_to_replay() -> None:
    trace = build_trace(sources())
    assert names(trace.entries) == [
        ("request", "POST /orders"),
        ("transaction", "TransactWriteItems"),
        ("delivery", "delivery 1 of 2"),
        ("event", "OrderPlaced"),
        ("execution", "StartExecution"),
        ("state", "ReserveInventory"),
        ("state", "ChargePayment"),
        ("retry", "ChargePayment"),
        ("state", "CreateShipment"),
        ("catch", "CreateShipment"),
        ("compensation", "CancelShipment"),
        ("compensation", "RefundPayment"),
        ("compensation", "ReleaseInventory"),
        ("state", "MarkOrderFailed"),
        ("status", "FAILED"),
        ("event", "OrderFailed"),
        ("execution-end", "ExecutionFailed"),
        ("notification", "OrderFailed"),
        ("delivery", "delivery 2 of 2"),
        ("event", "OrderPlaced"),
        ("replay", "POST /orders"),
        ("refused", "POST /orders"),
    ]
    assert [entry.at for entry in trace.entries] == sorted(entry.at for entry in trace.entries)
    assert (trace.status, trace.saga_status, trace.notes) == ("FAILED", "FAILED", [])


def test_a_request_the_engine_stamped_late_still_comes_before_what_it_did() -> None:
    # GIVEN the order API's request stamped by a busy engine well after it ended: the start it
    # implies (end minus duration) is later than its own transaction began by the handler's clock
    late = [replace(line, at=line.at + timedelta(milliseconds=30)) if line.request_id == "api-1" and line.level == "PLATFORM" else line
            for line in log_lines()]  # fmt: skip
    trace = build_trace(replace(sources(), log_lines=late))
    # THEN the request still opens the timeline, no later than its transaction
    assert names(trace.entries)[:2] == [("request", "POST /orders"), ("transaction", "TransactWriteItems")]
    assert trace.entries[0].at <= trace.entries[1].at


def test_timeline_entries_carry_durations_and_outcomes() -> None:
    entries = {(entry.kind, entry.name): entry for entry in build_trace(sources()).entries}
    placed = entries[("request", "POST /orders")]
    assert (placed.at, placed.duration_ms, placed.status) == (at(0), 30, "201")
    assert "Idempotency-Key k1" in placed.detail
    transaction = entries[("transaction", "TransactWriteItems")]
    assert (transaction.duration_ms, transaction.at) == (12, at(13))
    second = entries[("delivery", "delivery 2 of 2")]
    assert "ExecutionAlreadyExists" in second.detail
    replay = entries[("replay", "POST /orders")]
    assert (replay.status, replay.duration_ms) == ("201", 8)
    assert "nothing written" in replay.detail
    assert entries[("refused", "POST /orders")].status == "422"
    failed = entries[("event", "OrderFailed")]
    assert "Outcome → notifications function" in failed.detail
    notified = entries[("notification", "OrderFailed")]
    assert (notified.status, notified.duration_ms) == ("SENT", 20)


def test_an_event_delivered_twice_to_the_audit_queue_is_one_entry() -> None:
    events = [entry for entry in build_trace(sources()).entries if entry.name == "OrderFailed"]
    assert [entry.kind for entry in events] == ["event", "notification"]


def test_without_logs_the_table_and_history_still_tell_the_story() -> None:
    # GIVEN no log lines and an empty audit queue
    bare = sources()
    bare.log_lines, bare.audit_messages = [], []
    trace = build_trace(bare)
    # THEN the order's write and its notification come from the table, and the gaps are named
    kinds = [entry.kind for entry in trace.entries]
    assert kinds[0] == "transaction" and "notification" in kinds
    assert len(trace.notes) == 3
    assert any("audit queue" in note for note in trace.notes)


def test_an_order_whose_saga_has_not_started_says_so() -> None:
    early = sources()
    early.history, early.saga_status = None, None
    trace = build_trace(early)
    assert not any(entry.source == "saga" for entry in trace.entries)
    assert any("saga has not started" in note for note in trace.notes)


def test_ties_keep_causal_order() -> None:
    same = at(5)
    entries = [TraceEntry(same, "saga", "catch", "A"), TraceEntry(same, "saga", "compensation", "B"),
               TraceEntry(at(1), "api", "request", "C")]  # fmt: skip
    assert [entry.name for entry in sort_entries(entries)] == ["C", "A", "B"]


def test_json_has_one_document_with_entries_and_durations() -> None:
    document = build_trace(sources()).to_json()
    assert document["orderId"] == ORDER and document["status"] == "FAILED"
    assert document["durationMs"] == 955  # from the request's start to the refused replay's end
    first = document["entries"][0]
    assert first == {
        "at": "2026-11-23T00:20:41.000Z",
        "source": "api",
        "kind": "request",
        "name": "POST /orders",
        "detail": "order placed (Idempotency-Key k1)",
        "durationMs": 30,
        "status": "201",
    }
    json.dumps(document)  # plain JSON, no datetimes


def test_execution_arn_is_the_state_machine_s_with_the_order_id() -> None:
    machine = "arn:aws:states:us-east-1:000000000000:stateMachine:saga"
    assert execution_arn(machine, ORDER) == f"arn:aws:states:us-east-1:000000000000:execution:saga:{ORDER}"


# ---------------------------------------------------------------- trace events, not message text


def reworded(lines: list[LogLine]) -> list[LogLine]:
    """The same lines with every structured message reworded (the fields, trace_event too, kept)."""
    return [
        replace(line, message=f"reworded {number}", fields={**line.fields, "message": f"reworded {number}"})
        if line.fields
        else line
        for number, line in enumerate(lines)
    ]


def test_rewording_every_log_message_keeps_every_entry() -> None:
    # GIVEN the handlers' lines with every message reworded, their trace_event fields unchanged
    original = build_trace(sources())
    changed = sources()
    changed.log_lines = reworded(changed.log_lines)
    # WHEN the trace is built THEN it has the same entries, with the same outcomes
    trace = build_trace(changed)
    assert [(e.kind, e.name, e.status, e.duration_ms) for e in trace.entries] == [
        (e.kind, e.name, e.status, e.duration_ms) for e in original.entries
    ]
    assert trace.notes == []


def test_a_reworded_placement_line_is_still_the_request() -> None:
    # GIVEN the order API's placement line under a message the trace has never seen
    lines = request("order-api", "api-9", [
        powertools("accepted the order", 26, "api-9", trace_event=TraceEvent.ORDER_PLACED, order_id=ORDER,
                   idempotency_key="k7"),
    ], ended=30, duration=30)  # fmt: skip
    # WHEN the trace is built from it
    trace = build_trace(TraceSources(order_id=ORDER, log_lines=lines))
    # THEN the request is there, read from its trace_event
    assert names(trace.entries) == [("request", "POST /orders")]
    assert trace.entries[0].detail == "order placed (Idempotency-Key k7)"


def test_a_line_without_a_trace_event_is_not_read_for_its_message() -> None:
    lines = request("order-api", "api-9", [
        powertools("order placed", 26, "api-9", order_id=ORDER, idempotency_key="k7"),
    ], ended=30, duration=30)  # fmt: skip
    assert build_trace(TraceSources(order_id=ORDER, log_lines=lines)).entries == []


def test_the_sandbox_reads_the_trace_events_the_functions_log() -> None:
    # The sandbox keeps its own copy of the functions' enum (it never imports their code).
    assert {event.name: event.value for event in TraceEvent} == {
        event.name: event.value for event in FunctionsTraceEvent
    }


# ---------------------------------------------------------------- mermaid


def test_mermaid_is_a_sequence_diagram_with_the_ten_participants() -> None:
    diagram = render_mermaid(build_trace(sources())).splitlines()
    assert diagram[0] == "sequenceDiagram"
    participants = [line.strip() for line in diagram if line.strip().startswith("participant")]
    assert participants == [
        "participant Client",
        "participant API",
        "participant OrdersTable as Orders table",
        "participant Publisher",
        "participant EventBridge",
        "participant Saga",
        "participant Inventory",
        "participant Payment",
        "participant Shipping",
        "participant Notifications",
    ]


def test_mermaid_arrows_are_in_time_order_with_retries_and_compensations_visible() -> None:
    body = [line.strip() for line in render_mermaid(build_trace(sources())).splitlines()[12:]]

    def index(prefix: str) -> int:
        return next(number for number, line in enumerate(body) if line.startswith(prefix))

    assert index("Client->>API: POST /orders (Idempotency-Key k1)") < index(
        "API->>OrdersTable: TransactWriteItems"
    )
    assert index("API->>OrdersTable") < index("API-->>Client: 201 order placed")
    assert index("Saga->>Payment: ChargePayment") < index("Note over Saga,Payment: retry: attempt 1 failed")
    assert index("Note over Saga,Payment: retry") < index("Payment-->>Saga: SUCCEEDED, 2 attempts")
    assert index("Shipping--xSaga: FAILED") < index("Note over Saga: Catch InjectedFault → CancelShipment")
    assert index("Saga->>Shipping: CancelShipment (compensation)") < index(
        "Saga->>Payment: RefundPayment (compensation)"
    )
    assert index("Saga->>Payment: RefundPayment (compensation)") < index(
        "Saga->>Inventory: ReleaseInventory (compensation)"
    )
    assert index("Saga->>EventBridge: OrderFailed") < index("EventBridge->>Notifications: OrderFailed")
    assert (
        body[-1]
        == "Note over Client,Notifications: order FAILED: InjectedFault: InjectedFault in CreateShipment"
    )


def test_a_failed_delivery_is_a_failed_entry_and_a_crossed_arrow() -> None:
    # GIVEN a delivery whose record failed (Powertools logs it as it skips the record)
    failing = sources()
    failing.log_lines += request("outbox-publisher", "pub-3", [
        powertools("Record processing exception; skipping this record", 44, "pub-3", "WARNING",
                   correlation_id=ORDER, stream_event_id="ev-1", exception_name="ClientError",
                   exception="Traceback ...\nbotocore.exceptions.ClientError: throttled"),
    ], ended=46, duration=4)  # fmt: skip
    trace = build_trace(failing)
    # THEN it is one of three deliveries, failed, with the error
    deliveries = [entry for entry in trace.entries if entry.kind == "delivery"]
    assert [entry.status for entry in deliveries] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    assert deliveries[1].name == "delivery 2 of 3"
    assert deliveries[1].detail.endswith(
        "record failed: ClientError: botocore.exceptions.ClientError: throttled"
    )
    assert "OrdersTable-xPublisher: stream delivery 2 of 3" in render_mermaid(trace)


def test_mermaid_text_never_breaks_a_statement() -> None:
    # GIVEN details with ; and # in them (rule lists, ORDER# keys)
    for line in render_mermaid(build_trace(sources())).splitlines()[1:]:
        message = line.split(":", 1)[-1]
        # THEN no ; ends a message early, and every # is an entity code
        assert ";" not in message.replace("#35;", "")
        assert "#" not in message.replace("#35;", "")


# ---------------------------------------------------------------- any execution's trace

ARN = "arn:aws:states:us-east-1:000000000000:execution:shop-saga:run-1"
FN = "arn:aws:lambda:us-east-1:000000000000:function:"


def lambda_task(function: str, *, catch: list[tuple[list[str], str]] = (), **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": f"{FN}{function}", "Payload.$": "$"},
        "Catch": [{"ErrorEquals": errors, "Next": target} for errors, target in catch],
        **extra,
    }


# Book -> Pay -> done; Pay's Catch: Declined -> Unbook (compensation) -> Failed; anything else too.
SHOP_SAGA = {
    "StartAt": "Book",
    "States": {
        "Book": lambda_task("shop-book", Next="Pay"),
        "Pay": lambda_task(
            "shop-pay", catch=[(["Declined"], "Unbook"), (["States.ALL"], "Unbook")], Next="Done"
        ),
        "Unbook": lambda_task("shop-unbook", Next="Failed"),
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "ShopFailed"},
    },
}


def described(status: str, stopped: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "executionArn": ARN,
        "name": "run-1",
        "status": status,
        "startDate": at(0),
        "stopDate": at(stopped) if stopped is not None else None,
        "input": json.dumps({"cartId": "cart-123456"}),
        **extra,
    }


def declined_history() -> list[dict[str, Any]]:
    """Book succeeds; Pay fails twice on a transient error, then Declined, caught; Unbook; Fail."""
    return (
        History()
        .add("ExecutionStarted", 0)
        .task("Book", 10, (40, None), result="BOOKED")
        .task("Pay", 40, (60, "Transient"), (90, "Transient"), (120, "Declined"))
        .task("Unbook", 121, (150, None), result="UNBOOKED")
        .add("FailStateEntered", 151, stateEnteredEventDetails={"name": "Failed"})
        .add("ExecutionFailed", 152, executionFailedEventDetails={"error": "ShopFailed", "cause": "no money"})
        .events
    )


def test_an_execution_trace_has_states_attempts_catch_and_compensation() -> None:
    # GIVEN a history where Pay is retried, then declined and caught, and Book is undone
    trace = build_execution_trace(
        described("FAILED", 152), declined_history(), state_machine="ShopSaga", definition=SHOP_SAGA
    )
    # THEN the states are in order, each with its status
    assert [(s.name, s.status) for s in trace.states] == [
        ("Book", "SUCCEEDED"), ("Pay", "FAILED"), ("Unbook", "SUCCEEDED"), ("Failed", "FAILED"),
    ]  # fmt: skip
    pay = trace.states[1]
    # AND Pay's three attempts carry their errors and causes
    assert [(a.number, a.status, a.error) for a in pay.attempts] == [
        (1, "FAILED", "Transient"), (2, "FAILED", "Transient"), (3, "FAILED", "Declined"),
    ]  # fmt: skip
    assert pay.retries == 2 and pay.error == "Declined" and "Declined in Pay" in str(pay.cause)
    assert pay.function == "shop-pay" and pay.duration_ms == 80
    # AND the Catch that matched sent it to Unbook
    assert trace.catches == [CatchRoute("Pay", "Declined", "Declined", "Unbook")]
    # AND what ran after the failure is compensation (the Fail state is not)
    assert trace.compensations == ["Unbook"]
    assert (trace.status, trace.error, trace.cause) == ("FAILED", "ShopFailed", "no money")
    assert trace.input == {"cartId": "cart-123456"} and trace.duration_ms == 152


def test_catch_all_is_named_as_matched_when_no_specific_error_is_listed() -> None:
    history = (
        History()
        .task("Book", 0, (10, None))
        .task("Pay", 10, (20, "Lambda.Unknown"))
        .task("Unbook", 21, (30, None))
        .add("FailStateEntered", 31, stateEnteredEventDetails={"name": "Failed"})
        .add("ExecutionFailed", 32, executionFailedEventDetails={"error": "ShopFailed"})
        .events
    )
    trace = build_execution_trace(described("FAILED", 32), history, state_machine="S", definition=SHOP_SAGA)
    assert trace.catches == [CatchRoute("Pay", "Lambda.Unknown", "States.ALL", "Unbook")]


def test_a_succeeded_execution_has_no_catch_and_no_compensation() -> None:
    history = (
        History()
        .task("Book", 0, (10, None))
        .task("Pay", 10, (20, "Transient"), (30, None))
        .add("SucceedStateEntered", 31, stateEnteredEventDetails={"name": "Done"})
        .add("SucceedStateExited", 31, stateExitedEventDetails={"name": "Done"})
        .add("ExecutionSucceeded", 32, executionSucceededEventDetails={"output": "{}"})
        .events
    )
    trace = build_execution_trace(
        described("SUCCEEDED", 32), history, state_machine="S", definition=SHOP_SAGA
    )
    assert trace.is_succeeded and trace.catches == [] and trace.compensations == []
    assert [(s.name, s.status, len(s.attempts)) for s in trace.states] == [
        ("Book", "SUCCEEDED", 1), ("Pay", "SUCCEEDED", 2), ("Done", "SUCCEEDED", 0),
    ]  # fmt: skip


def test_an_uncaught_failure_fails_the_state_and_the_execution() -> None:
    # GIVEN a task that fails with no Catch: the engine ends the execution without exiting the state
    history = (
        History()
        .add("TaskStateEntered", 0, stateEnteredEventDetails={"name": "Book"})
        .add("TaskScheduled", 0)
        .add("TaskFailed", 10, taskFailedEventDetails={"error": "Boom", "cause": "bad"})
        .add("ExecutionFailed", 11, executionFailedEventDetails={"error": "Boom", "cause": "bad"})
        .events
    )
    trace = build_execution_trace(described("FAILED", 11), history, state_machine="S", definition=SHOP_SAGA)
    (book,) = trace.states
    assert (book.status, book.error, book.catch, book.exited_at) == ("FAILED", "Boom", None, at(11))
    assert trace.compensations == []


def test_nested_states_of_a_parallel_are_kept_with_their_depth_by_previous_event_ids() -> None:
    # GIVEN an AWS-shaped history: a Parallel whose two branches interleave (previousEventId threads them)
    events = [
        {"id": 1, "type": "ExecutionStarted", "timestamp": at(0)},
        {"id": 2, "type": "ParallelStateEntered", "previousEventId": 1, "timestamp": at(1),
         "stateEnteredEventDetails": {"name": "Both"}},
        {"id": 3, "type": "ParallelStateStarted", "previousEventId": 2, "timestamp": at(1)},
        {"id": 4, "type": "TaskStateEntered", "previousEventId": 3, "timestamp": at(2),
         "stateEnteredEventDetails": {"name": "Left"}},
        {"id": 5, "type": "TaskStateEntered", "previousEventId": 3, "timestamp": at(2),
         "stateEnteredEventDetails": {"name": "Right"}},
        {"id": 6, "type": "TaskScheduled", "previousEventId": 4, "timestamp": at(3)},
        {"id": 7, "type": "TaskScheduled", "previousEventId": 5, "timestamp": at(3)},
        {"id": 8, "type": "TaskFailed", "previousEventId": 7, "timestamp": at(5),
         "taskFailedEventDetails": {"error": "Oops", "cause": "right broke"}},
        {"id": 9, "type": "TaskScheduled", "previousEventId": 8, "timestamp": at(6)},
        {"id": 10, "type": "TaskSucceeded", "previousEventId": 6, "timestamp": at(7),
         "taskSucceededEventDetails": {"output": "{}"}},
        {"id": 11, "type": "TaskStateExited", "previousEventId": 10, "timestamp": at(7),
         "stateExitedEventDetails": {"name": "Left"}},
        {"id": 12, "type": "TaskSucceeded", "previousEventId": 9, "timestamp": at(8),
         "taskSucceededEventDetails": {"output": "{}"}},
        {"id": 13, "type": "TaskStateExited", "previousEventId": 12, "timestamp": at(8),
         "stateExitedEventDetails": {"name": "Right"}},
        {"id": 14, "type": "ParallelStateSucceeded", "previousEventId": 13, "timestamp": at(9)},
        {"id": 15, "type": "ParallelStateExited", "previousEventId": 14, "timestamp": at(9),
         "stateExitedEventDetails": {"name": "Both"}},
        {"id": 16, "type": "SucceedStateEntered", "previousEventId": 15, "timestamp": at(10),
         "stateEnteredEventDetails": {"name": "Done"}},
        {"id": 17, "type": "ExecutionSucceeded", "previousEventId": 16, "timestamp": at(10)},
    ]  # fmt: skip
    trace = build_execution_trace(described("SUCCEEDED", 10), events, state_machine="S")
    # THEN each branch's state sits under the Parallel, and Right's retry is its own
    assert [(s.name, s.depth, s.status, len(s.attempts)) for s in trace.states] == [
        ("Both", 0, "SUCCEEDED", 0), ("Left", 1, "SUCCEEDED", 1), ("Right", 1, "SUCCEEDED", 2),
        ("Done", 0, "SUCCEEDED", 0),
    ]  # fmt: skip
    assert trace.states[2].attempts[0].error == "Oops"
    assert trace.notes == ["the state machine's definition could not be read: Catch entries are not named"]


def test_a_caught_parallel_without_failure_events_is_told_by_where_it_went() -> None:
    # GIVEN an engine that writes no failure event for a Parallel: only its exit to a Catch's Next
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {"Type": "Parallel", "Branches": [], "Next": "Done",
                     "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Undo"}]},
            "Undo": {"Type": "Pass", "End": True},
            "Done": {"Type": "Succeed"},
        },
    }  # fmt: skip
    output = json.dumps({"error": {"Error": "Oops", "Cause": "a branch broke"}})
    history = (
        History()
        .add("ParallelStateEntered", 0, stateEnteredEventDetails={"name": "Both"})
        .add("TaskScheduled", 1)
        .add("TaskFailed", 2, taskFailedEventDetails={"error": "Oops", "cause": "a branch broke"})
        .add("ParallelStateExited", 3, stateExitedEventDetails={"name": "Both", "output": output})
        .add("PassStateEntered", 4, stateEnteredEventDetails={"name": "Undo"})
        .add("PassStateExited", 4, stateExitedEventDetails={"name": "Undo"})
        .add("ExecutionSucceeded", 5)
        .events
    )
    trace = build_execution_trace(
        described("SUCCEEDED", 5), history, state_machine="S", definition=definition
    )
    assert trace.catches == [CatchRoute("Both", "Oops", "States.ALL", "Undo")]
    assert trace.compensations == ["Undo"]


def test_each_attempt_gets_its_function_run_by_time_and_the_request_id_the_history_gives() -> None:
    # GIVEN Book's run, named by the request id its task output carries (as AWS returns it), logged
    # late; and Pay's three runs, found by when they ran
    history = declined_history()
    book_success = json.dumps({"SdkResponseMetadata": {"RequestId": "book-1"}, "Payload": {}})
    next(e for e in history if e["type"] == "TaskSucceeded")["taskSucceededEventDetails"]["output"] = (
        book_success
    )
    invocations = group_invocations([
        *request("shop-book", "book-1", [powertools("booked", 500, "book-1", cart="cart-123456")], ended=505,
                 duration=5),
        *request("shop-pay", "pay-1", ["Traceback (most recent call last):", "Transient: try again"],
                 ended=58, duration=10),
        *request("shop-pay", "pay-2", [], ended=88, duration=10),
        *request("shop-pay", "pay-3", [powertools("declined", 110, "pay-3")], ended=115, duration=5),
    ])  # fmt: skip
    trace = build_execution_trace(
        described("FAILED", 152), history, state_machine="S", definition=SHOP_SAGA, invocations=invocations
    )
    book, pay = trace.states[0], trace.states[1]
    assert book.attempts[0].request_id == "book-1"
    assert [line.message for line in book.attempts[0].log_lines if line.level != "PLATFORM"] == ["booked"]
    assert [a.request_id for a in pay.attempts] == ["pay-1", "pay-2", "pay-3"]
    assert [line.level for line in pay.attempts[0].log_lines if line.level != "PLATFORM"] == [
        "ERROR",
        "ERROR",
    ]
    # AND the rendered text shows the retries, the Catch, the compensation and the log lines
    text = render_execution_text(trace)
    assert "execution run-1 of S: FAILED in 0.15s" in text
    assert "attempt 1: Transient: Transient in Pay; retried" in text
    assert "Catch Declined (matched Declined) → Unbook" in text
    assert "↩ Unbook" in text and "| INFO     booked" in text
    assert text.rstrip().endswith("execution FAILED — ShopFailed: no money")


def test_runs_of_other_executions_at_the_same_time_are_told_apart_by_the_input_they_name() -> None:
    # GIVEN two runs of shop-book while Book ran: only one names this execution's cart
    history = History().task("Book", 0, (100, None)).add("ExecutionSucceeded", 101).events
    invocations = group_invocations([
        *request("shop-book", "other", [powertools("booked", 50, "other", cart="cart-999999")], ended=60,
                 duration=50),
        *request("shop-book", "ours", [powertools("booked", 50, "ours", cart="cart-123456")], ended=61,
                 duration=50),
    ])  # fmt: skip
    trace = build_execution_trace(
        described("SUCCEEDED", 101), history, state_machine="S", definition=SHOP_SAGA, invocations=invocations
    )
    assert trace.states[0].attempts[0].request_id == "ours"
    # AND when nothing tells them apart, no lines are shown, and a note says why
    invocations = [replace(i, lines=i.lines[:1]) for i in invocations]  # START lines only
    trace = build_execution_trace(
        described("SUCCEEDED", 101), history, state_machine="S", definition=SHOP_SAGA, invocations=invocations
    )
    assert trace.states[0].attempts[0].request_id is None
    assert "overlap runs of the same function" in trace.notes[0]


def test_function_names_come_from_arns_names_and_qualified_arns() -> None:
    assert function_name_of(f"{FN}shop-pay") == "shop-pay"
    assert function_name_of(f"{FN}shop-pay:live") == "shop-pay"
    assert function_name_of("shop-pay") == "shop-pay"
    assert function_name_of("$.fn") is None
    assert function_of_state({"Type": "Task", "Resource": f"{FN}direct"}) == "direct"
    assert function_of_state({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage"}) is None
    assert function_of_state(lambda_task("x"), {"FunctionName": "from-history"}) == "from-history"


def test_the_json_form_names_states_attempts_catches_and_compensations() -> None:
    trace = build_execution_trace(
        described("FAILED", 152), declined_history(), state_machine="ShopSaga", definition=SHOP_SAGA
    )
    document = json.loads(json.dumps(trace.to_json()))
    assert document["stateMachine"] == "ShopSaga" and document["status"] == "FAILED"
    assert [state["name"] for state in document["states"]] == ["Book", "Pay", "Unbook", "Failed"]
    assert document["states"][1]["attempts"][2]["error"] == "Declined"
    assert document["catches"] == [
        {"state": "Pay", "error": "Declined", "matched": "Declined", "next": "Unbook"}
    ]
    assert document["compensations"] == ["Unbook"]


def test_a_failed_attempt_is_tied_to_its_run_by_the_request_id_its_cause_names() -> None:
    # GIVEN two overlapping runs of shop-book while Book failed; the cause names one (a Python
    # runtime's error carries its requestId, as on AWS)
    cause = json.dumps({"errorMessage": "no", "errorType": "Oops", "requestId": "ours", "stackTrace": []})
    history = (
        History()
        .add("TaskStateEntered", 0, stateEnteredEventDetails={"name": "Book"})
        .add("TaskScheduled", 0)
        .add("TaskFailed", 100, taskFailedEventDetails={"error": "Oops", "cause": cause})
        .add("ExecutionFailed", 101)
        .events
    )
    invocations = group_invocations([
        *request("shop-book", "other", ["other's line"], ended=60, duration=50),
        *request("shop-book", "ours", ["our line"], ended=61, duration=50),
    ])  # fmt: skip
    # WHEN the trace is built
    trace = build_execution_trace(
        described("FAILED", 101), history, state_machine="S", definition=SHOP_SAGA, invocations=invocations
    )
    # THEN the failed attempt has that run's lines, not the other's
    (attempt,) = trace.states[0].attempts
    assert attempt.request_id == "ours"
    assert "our line" in [line.message for line in attempt.log_lines]


def test_a_parallel_s_branch_tasks_are_its_tasks_not_retries() -> None:
    # GIVEN an engine's history of a Parallel whose three branch tasks it reports without their
    # states: three TaskScheduled, then three TaskSucceeded
    history = (
        History()
        .add("ParallelStateEntered", 0, stateEnteredEventDetails={"name": "BookTrip"})
        .add("TaskScheduled", 1).add("TaskScheduled", 1).add("TaskScheduled", 1)
        .add("TaskSucceeded", 5, taskSucceededEventDetails={"output": "{}"})
        .add("TaskSucceeded", 6, taskSucceededEventDetails={"output": "{}"})
        .add("TaskSucceeded", 7, taskSucceededEventDetails={"output": "{}"})
        .add("ParallelStateExited", 8, stateExitedEventDetails={"name": "BookTrip"})
        .add("ExecutionSucceeded", 9)
        .events
    )  # fmt: skip
    # WHEN traced
    trace = build_execution_trace(described("SUCCEEDED", 9), history, state_machine="S")
    # THEN each task succeeded, and none reads as a retry
    (parallel,) = trace.states
    assert [a.status for a in parallel.attempts] == ["SUCCEEDED"] * 3
    text = render_execution_text(trace)
    assert "3 tasks" in text and "retried" not in text
