"""Outbox publisher: each OUTBOX# record becomes an OrderPlaced event and one saga execution.

A batch is published together: its events in as few PutEvents calls as the API allows, then its
sagas started concurrently. Each record is then acknowledged (or reported as failed) on its own,
through Powertools' batch processor, so one bad record never holds back the others.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import client, put_order_events
from shared.trace_events import TraceEvent

logger = Logger()
# With a logger, a failed record is logged (with its order and stream event id) as it is skipped.
# The processor only calls its warning method, which Powertools' Logger has (it is no logging.Logger).
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, logger=cast(logging.Logger, logger))
# Saga starts in flight at once: enough to hide the round trips of a full batch.
START_CONCURRENCY = 8


def start_saga(order: dict[str, Any], sfn: Any = None) -> bool:
    """Start the saga named after the order; False when a delivery already started it."""
    sfn = sfn or client("stepfunctions")
    try:
        sfn.start_execution(
            stateMachineArn=os.environ["STATE_MACHINE_ARN"],
            name=order["orderId"],
            input=json.dumps({"order": order}),
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True


class UnreadableRecordError(Exception):
    """An outbox record whose payload cannot be read: retried, then sent to the on-failure queue."""


class PublishError(Exception):
    """The record's event could not be put on the bus; the record is retried."""


def _keys_of(record: DynamoDBRecord) -> dict[str, Any]:
    try:
        return dict((record.dynamodb.keys if record.dynamodb else None) or {})
    except (ValueError, TypeError, ArithmeticError):
        return {}


def read_order(record: DynamoDBRecord) -> dict[str, Any]:
    """The order an outbox record carries; UnreadableRecordError when its image or payload is not one."""
    image: dict[str, Any] = {}
    try:
        image = (record.dynamodb.new_image if record.dynamodb else None) or {}
        return dict(json.loads(image["payload"]))
    except (KeyError, ValueError, TypeError, ArithmeticError) as error:
        raise UnreadableRecordError(
            f"outbox record {_keys_of(record).get('pk', '?')} has an unreadable image or payload"
        ) from error


@dataclass
class Delivery:
    """What publishing one record of the batch came to."""

    keys: dict[str, Any]  # the record's key: what names it even when its image cannot be read
    order: dict[str, Any] | None = None
    error: Exception | None = None
    is_started: bool = False


def _start(delivery: Delivery) -> None:
    try:
        delivery.is_started = start_saga(delivery.order or {})
    except Exception as error:  # reported on its record; the others go on
        delivery.error = error


def publish_batch(records: list[DynamoDBRecord]) -> dict[str, Delivery]:
    """Publish every record: the events first (batched), then the (deduplicated) sagas, concurrently."""
    deliveries: dict[str, Delivery] = {}
    for record in records:
        delivery = deliveries[str(record.event_id)] = Delivery(_keys_of(record))
        try:
            delivery.order = read_order(record)
        except UnreadableRecordError as error:
            delivery.error = error
    readable = [d for d in deliveries.values() if d.error is None]
    rejections = put_order_events("OrderPlaced", [d.order or {} for d in readable])
    for delivery, rejection in zip(readable, rejections, strict=True):
        delivery.error = PublishError(rejection) if rejection else None
    published = [d for d in readable if d.error is None]
    if published:
        with ThreadPoolExecutor(max_workers=min(START_CONCURRENCY, len(published))) as pool:
            list(pool.map(_start, published))
    return deliveries


def acknowledge(record: DynamoDBRecord, deliveries: dict[str, Delivery]) -> None:
    """Log how the record was published, or raise its error so that it is reported as failed."""
    delivery = deliveries[str(record.event_id)]
    logger.append_keys(stream_event_id=record.event_id)
    # An unreadable record still names its order: by its key, OUTBOX#<orderId>.
    order_id = (delivery.order or {}).get("orderId") or str(delivery.keys.get("pk", "")).removeprefix(
        "OUTBOX#"
    )
    logger.set_correlation_id(order_id)
    if delivery.error is not None:
        raise delivery.error
    logger.info(
        "outbox record published",
        extra={
            "trace_event": TraceEvent.OUTBOX_PUBLISHED,
            "saga_started": delivery.is_started,
            "stream_event_id": record.event_id,
        },
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    deliveries = publish_batch([DynamoDBRecord(raw) for raw in event.get("Records", [])])
    return process_partial_response(
        event=event,
        record_handler=lambda record: acknowledge(record, deliveries),
        processor=processor,
        context=context,
    )
