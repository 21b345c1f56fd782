"""Shipping saga step: create a shipment (forward) and cancel it (compensation)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.steps import Action, handle_step, idempotent_step
from shipping.shipments import cancel_shipment, create_shipment

logger = Logger()

ACTIONS = {
    "create": Action("CreateShipment", idempotent_step(create_shipment)),
    "cancel": Action("CancelShipment", idempotent_step(cancel_shipment)),
}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_step(event, context, service="shipping", actions=ACTIONS, logger=logger)
