"""Inventory saga step: reserve stock (forward) and release it (compensation)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from inventory.stock import release_stock, reserve_stock
from shared.steps import Action, handle_step, idempotent_step

logger = Logger()

ACTIONS = {
    "reserve": Action("ReserveInventory", idempotent_step(reserve_stock)),
    "release": Action("ReleaseInventory", idempotent_step(release_stock)),
}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_step(event, context, service="inventory", actions=ACTIONS, logger=logger)
