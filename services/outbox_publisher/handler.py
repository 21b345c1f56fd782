"""Outbox publisher: each OUTBOX# record becomes an OrderPlaced event and one saga execution."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import client, put_order_event
from shared.faults import is_fault_injection_enabled, is_first_occurrence

logger = Logger()
# With a logger, a failed record is logged (with its order and stream event id) as it is skipped.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, logger=logger)


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


class RedeliveryRequestedError(Exception):
    """The record is reported as failed after its work was done (--duplicate-delivery)."""


def read_order(image: dict[str, Any]) -> dict[str, Any]:
    """The order an outbox record carries."""
    try:
        return dict(json.loads(image["payload"]))
    except (KeyError, ValueError, TypeError) as error:
        raise UnreadableRecordError(
            f"outbox record of order {image.get('orderId', '?')} has an unreadable payload"
        ) from error


def publish_record(record: DynamoDBRecord) -> None:
    """Publish one outbox record: the event first, then the (deduplicated) saga."""
    logger.append_keys(stream_event_id=record.event_id)
    image = (record.dynamodb.new_image if record.dynamodb else None) or {}
    logger.set_correlation_id(image.get("orderId"))
    order = read_order(image)
    put_order_event("OrderPlaced", order)
    is_started = start_saga(order)
    logger.info(
        "outbox record published", extra={"saga_started": is_started, "stream_event_id": record.event_id}
    )
    faults = (order.get("faults") or {}) if is_fault_injection_enabled() else {}
    if faults.get("crash") == "publisher" and is_first_occurrence(order["orderId"], "crash-publisher"):
        logger.warning("injected crash: the publisher dies after starting the saga, before acknowledging")
        sys.stdout.flush()
        os._exit(1)
    if faults.get("duplicateDelivery") and is_first_occurrence(order["orderId"], "duplicate-delivery"):
        raise RedeliveryRequestedError(
            "record reported as failed after it was published (--duplicate-delivery)"
        )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=publish_record, processor=processor, context=context
    )
