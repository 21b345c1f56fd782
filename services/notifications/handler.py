"""Notifications: tells the customer how their order ended (EventBridge rule target)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import named_table
from shared.records import put_if_absent
from shared.trace_events import TraceEvent

logger = Logger()

MESSAGES = {
    "OrderCompleted": "Your order is on its way.",
    "OrderFailed": "We could not complete your order; nothing was charged.",
}


def record_notification(event: EventBridgeEvent, table: Any = None) -> bool:
    """Store one notification per order and event type; False when it was already sent."""
    table = table or named_table("ORDERS_TABLE")
    order_id = event.detail["orderId"]
    notification = {
        "pk": f"ORDER#{order_id}",
        "sk": f"NOTIFICATION#{event.detail_type}",
        "orderId": order_id,
        "eventId": event.get_id,
        "message": MESSAGES.get(event.detail_type, event.detail_type),
        "sentAt": event.time,
    }
    return put_if_absent(table, notification)


@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(event.detail.get("orderId"))
    logger.info(
        "event received",
        extra={
            "trace_event": TraceEvent.NOTIFICATION_RECEIVED,
            "detail_type": event.detail_type,
            "event_id": event.get_id,
        },
    )
    is_new = record_notification(event)
    logger.info(
        "notification",
        extra={
            "trace_event": TraceEvent.NOTIFICATION_SENT,
            "detail_type": event.detail_type,
            "is_new": is_new,
        },
    )
    return {"sent": is_new}
