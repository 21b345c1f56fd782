"""Payment saga step: charge (forward) and refund (compensation)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from payment.charges import charge_payment, refund_payment
from shared.steps import Action, handle_step, idempotent_step

logger = Logger()

ACTIONS = {
    "charge": Action("ChargePayment", idempotent_step(charge_payment)),
    "refund": Action("RefundPayment", idempotent_step(refund_payment)),
}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_step(event, context, service="payment", actions=ACTIONS, logger=logger)
