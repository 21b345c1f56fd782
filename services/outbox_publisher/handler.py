"""Outbox publisher: each OUTBOX# record becomes an OrderPlaced event and one saga execution."""

from __future__ import annotations

import json
import os
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


def publish_record(record: DynamoDBRecord) -> None:
    """Publish one outbox record: the event first, then the (deduplicated) saga."""
    logger.set_correlation_id(None)
    logger.append_keys(stream_event_id=record.event_id)
    image = record.dynamodb.new_image if record.dynamodb else None
    if not image or "payload" not in image:
        raise ValueError(f"outbox record {record.event_id} has no payload")
    order = json.loads(image["payload"])
    logger.set_correlation_id(order["orderId"])
    put_order_event("OrderPlaced", order)
    is_started = start_saga(order)
    logger.info(
        "outbox record published", extra={"saga_started": is_started, "stream_event_id": record.event_id}
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=publish_record, processor=processor, context=context
    )
