"""Peeking at a queue on the real engine leaves its messages as they were: visible, never received."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from sandbox.dlq import list_dead_letters
from sandbox.queues import list_messages
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.trace import peek_messages

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(stack: LocalStack, engine_settings: Settings) -> Iterator[tuple[Any, str]]:
    sqs = stack.client("sqs", engine_settings.region)
    url = sqs.create_queue(QueueName=f"peek-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def receive_counts(sqs: Any, url: str) -> dict[str, str]:
    """Receive every message once (hidden afterwards): its ApproximateReceiveCount by body."""
    counts: dict[str, str] = {}
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageSystemAttributeNames=["All"]
    ).get("Messages", []):
        counts.update(
            (message["Body"], message["Attributes"]["ApproximateReceiveCount"]) for message in batch
        )
    return counts


def test_the_engine_lists_a_queue_without_receiving_it(
    stack: LocalStack, engine_settings: Settings, queue: tuple[Any, str]
) -> None:
    # GIVEN a queue of 12 messages (more than one receive returns)
    sqs, url = queue
    bodies = [json.dumps({"id": f"m{n}", "detail": {"orderId": "o1"}}) for n in range(12)]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    # WHEN it is listed, and peeked twice as a trace peeks the audit queue
    listed = list_messages(stack.engine.endpoint_url, url, engine_settings.region)
    peeks = [peek_messages(sqs, url, engine_url=stack.engine.endpoint_url) for _ in range(2)]
    # THEN every message was read each time, with the time it was sent
    assert listed is not None and sorted(message["Body"] for message in listed) == sorted(bodies)
    for peeked in peeks:
        assert sorted(message.event["id"] for message in peeked) == sorted(f"m{n}" for n in range(12))
        assert all(message.sent_at.year >= 2024 for message in peeked)
    # AND none was received: all are visible, and the first receive of each counts 1
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "12"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert receive_counts(sqs, url) == dict.fromkeys(bodies, "1")


def test_listing_dead_letters_leaves_their_receive_counts_alone(
    stack: LocalStack, engine_settings: Settings, queue: tuple[Any, str]
) -> None:
    # GIVEN an on-failure queue holding one record of the orders table's stream
    sqs, url = queue
    table = stack.client("dynamodb", engine_settings.region).describe_table(
        TableName=stack.outputs["OrdersTableName"]
    )
    letter = {
        "requestContext": {"condition": "RetryAttemptsExhausted"},
        "responseContext": {"functionError": "Unhandled"},
        "timestamp": "2024-01-01T00:00:00Z",
        "DDBStreamBatchInfo": {
            "streamArn": table["Table"]["LatestStreamArn"],
            "startSequenceNumber": "1".zfill(21),
            "endSequenceNumber": "0",  # names no record: this test is about the queue
        },
    }
    body = json.dumps(letter)
    message_id = sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]
    failure_queue = replace(stack, outputs={**stack.outputs, "OutboxFailureQueueUrl": url})
    # WHEN the dead letters are listed twice
    listings = [list_dead_letters(failure_queue, engine_settings.region) for _ in range(2)]
    # THEN the letter is listed each time, and still has never been received
    assert [[letter.message_id for letter in listing] for listing in listings] == [[message_id]] * 2
    assert listings[0][0].condition == "RetryAttemptsExhausted"
    assert receive_counts(sqs, url) == {body: "1"}
