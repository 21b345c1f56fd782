"""Saga's last step: set the order's final status and emit OrderCompleted or OrderFailed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from order_status.transitions import set_order_status
from shared.aws import put_order_event
from shared.status import COMPLETED
from shared.steps import idempotent_step

logger = Logger()


@idempotent_step
def finish_order(command: dict[str, Any]) -> dict[str, Any]:
    """Set the final status, then announce it (once per order id + status)."""
    result = set_order_status(command)
    detail_type = "OrderCompleted" if command["status"] == COMPLETED else "OrderFailed"
    put_order_event(
        detail_type,
        {"orderId": command["orderId"], "status": command["status"], "reason": result.get("reason")},
    )
    return result


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    finish_order.config.register_lambda_context(context)
    logger.set_correlation_id(event["orderId"])
    result = finish_order(command={**event, "step": f"Mark{event['status'].title()}"})
    logger.info("order finished", extra={"result": result, "idempotent_hit": finish_order.was_replayed})
    return result
