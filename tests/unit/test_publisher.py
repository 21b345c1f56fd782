"""The outbox publisher: a batch's events in as few PutEvents calls as allowed, one saga per order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from botocore.stub import ANY, Stubber

from outbox_publisher import handler
from sandbox.engine_patches.faults import FaultRule, apply_rule
from shared import aws

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:saga"


def raw_outbox_record(order_id: str, payload: str | None = None, sequence: int = 1) -> dict[str, Any]:
    """A stream record of an outbox item, as the stream mapping delivers it."""
    body = payload if payload is not None else json.dumps({"orderId": order_id, "items": []})
    return {
        "eventID": f"event-{order_id}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": {"S": f"OUTBOX#{order_id}"}, "sk": {"S": "OUTBOX"}},
            "NewImage": {"pk": {"S": f"OUTBOX#{order_id}"}, "sk": {"S": "OUTBOX"}, "orderId": {"S": order_id},
                         "payload": {"S": body}},
            "SequenceNumber": str(sequence),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }  # fmt: skip


def outbox_record(order_id: str, payload: str | None = None) -> DynamoDBRecord:
    return DynamoDBRecord(raw_outbox_record(order_id, payload))


@pytest.fixture
def clients(client_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("EVENT_BUS_NAME", "orders")
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE)
    stubbed = {name: client_factory(name) for name in ("events", "stepfunctions")}
    monkeypatch.setattr(aws, "client", lambda service: stubbed[service])
    monkeypatch.setattr(handler, "client", lambda service: stubbed[service])
    monkeypatch.setattr(handler, "START_CONCURRENCY", 1)  # the stubber answers in order
    with Stubber(stubbed["events"]) as events, Stubber(stubbed["stepfunctions"]) as sfn:
        yield events, sfn
        events.assert_no_pending_responses()
        sfn.assert_no_pending_responses()


def expect_put(events: Stubber, count: int, failed: frozenset[int] = frozenset()) -> None:
    entries = [
        {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} if i in failed else {"EventId": f"e{i}"}
        for i in range(count)
    ]
    events.add_response(
        "put_events", {"FailedEntryCount": len(failed), "Entries": entries}, {"Entries": [ANY] * count}
    )


def test_a_batch_puts_its_events_ten_at_a_time_then_starts_one_saga_per_order(clients: Any) -> None:
    # GIVEN a batch of twelve outbox records
    events, sfn = clients
    records = [outbox_record(f"o{i:02}") for i in range(12)]
    expect_put(events, 10)
    expect_put(events, 2)
    for i in range(12):
        sfn.add_response(
            "start_execution",
            {"executionArn": f"{MACHINE}:o{i:02}", "startDate": "2026-01-01T00:00:00Z"},
            {"stateMachineArn": MACHINE, "name": f"o{i:02}", "input": ANY},
        )
    # WHEN it is published
    deliveries = handler.publish_batch(records)
    # THEN two PutEvents calls carried all twelve events, and each order's saga started once
    assert all(d.error is None and d.is_started for d in deliveries.values())


def test_a_rejected_event_or_an_unreadable_record_fails_only_its_own_record(clients: Any) -> None:
    # GIVEN three records: an unreadable one, one whose event the bus rejects, one that goes through
    events, sfn = clients
    records = [outbox_record("bad", payload="{not json"), outbox_record("rejected"), outbox_record("ok")]
    expect_put(events, 2, failed=frozenset({0}))
    sfn.add_response(
        "start_execution", {"executionArn": f"{MACHINE}:ok", "startDate": "2026-01-01T00:00:00Z"}
    )
    # WHEN published
    deliveries = handler.publish_batch(records)
    # THEN only the good record started a saga; the others carry their own errors
    assert isinstance(deliveries["event-bad"].error, handler.UnreadableRecordError)
    assert isinstance(deliveries["event-rejected"].error, handler.PublishError)
    assert "InternalFailure" in str(deliveries["event-rejected"].error)
    assert deliveries["event-ok"].error is None and deliveries["event-ok"].is_started


def test_a_saga_already_started_is_not_an_error(clients: Any) -> None:
    # GIVEN a redelivered record whose saga a first delivery started
    events, sfn = clients
    expect_put(events, 1)
    sfn.add_client_error("start_execution", service_error_code="ExecutionAlreadyExists")
    # WHEN published again THEN it succeeds without starting a second saga
    (delivery,) = handler.publish_batch([outbox_record("again")]).values()
    assert delivery.error is None and not delivery.is_started


# ---------------------------------------------------------------- a poisoned record (`sandbox order --poison`)

POISONED = {"N": "not-a-number{"}  # what the engine's poison rule puts in every non-key attribute


class Context:
    function_name = "outbox-publisher"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:outbox-publisher"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def poisoned_delivery(event: dict[str, Any], order_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Deliver ``event`` to the publisher through the engine's poison rule on ``order_id``'s record:
    the event the handler got, and what it answered."""
    rule = FaultRule.parse(
        {"target": {"function": "publisher"}, "kind": "poison", "record": order_id}, "f1", 0.0
    )
    seen: list[dict[str, Any]] = []

    def invoke(func: Any, delivered: dict[str, Any]) -> dict[str, Any]:
        seen.append(delivered)
        return {"body": handler.lambda_handler(delivered, Context())}

    answer = apply_rule(rule, 1, invoke, {}, event)
    return seen[0], answer["body"]


def test_a_poisoned_record_fails_alone_and_the_rest_of_its_batch_is_published(clients: Any) -> None:
    # GIVEN a batch of three outbox records, the middle one poisoned by the engine's rule
    events, sfn = clients
    event = {
        "Records": [
            raw_outbox_record(order_id, sequence=n) for n, order_id in enumerate(("o1", "o2", "o3"), 1)
        ]
    }
    expect_put(events, 2)
    for order_id in ("o1", "o3"):
        sfn.add_response(
            "start_execution",
            {"executionArn": f"{MACHINE}:{order_id}", "startDate": "2026-01-01T00:00:00Z"},
            {"stateMachineArn": MACHINE, "name": order_id, "input": ANY},
        )
    # WHEN the publisher gets the batch
    delivered, answer = poisoned_delivery(event, "o2")
    # THEN the poisoned record's image was unreadable past its key (as the engine poisons it)
    image = delivered["Records"][1]["dynamodb"]["NewImage"]
    assert image == {
        "pk": {"S": "OUTBOX#o2"},
        "sk": {"S": "OUTBOX"},
        "orderId": POISONED,
        "payload": POISONED,
    }
    # AND only that record is reported failed (retried, then dead-lettered); the others started their sagas
    assert answer == {"batchItemFailures": [{"itemIdentifier": "2"}]}


def test_an_unreadable_image_is_an_unreadable_record_named_by_its_key() -> None:
    # GIVEN a record whose non-key attributes are not what they claim to be
    raw = raw_outbox_record("o9")
    raw["dynamodb"]["NewImage"] = {**raw["dynamodb"]["NewImage"], "orderId": POISONED, "payload": POISONED}
    # WHEN read THEN it is an UnreadableRecordError naming the record by its key, not a crash
    with pytest.raises(
        handler.UnreadableRecordError, match="outbox record OUTBOX#o9 has an unreadable image"
    ):
        handler.read_order(DynamoDBRecord(raw))
