"""The order demo as a scenario of chaos for any saga: its inputs and its invariants, plugged in as a
user's own are (``sandbox chaos OrderSagaStateMachine --inputs sandbox.chaos.scenario:saga_orders
--invariants sandbox.chaos.scenario:nothing_lost_or_done_twice``).

The executions start the saga directly, so the faults land on its steps (an ``error-after`` on
``ChargePayment`` is a charge whose answer was lost); the invariants are the demo checker's, read
from the tables: every order ended, none that failed keeps a charge, shipment or reservation, each
completed one is charged once for its total and shipped once, and stock moved by exactly what the
completed orders bought.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.bench.tables import read_snapshot
from sandbox.bench.verdict import check_invariants

if TYPE_CHECKING:
    from sandbox.saga_chaos import ChaosContext

PRICE = Decimal("12.00")
STOCK = 1_000_000  # a product of the run's own, never short: stock is checked to the unit
# The run's product and its stock before, by the stack it runs on (inputs and invariants each get
# a context of their own, on the same stack).
_products: dict[int, tuple[str, int]] = {}


def _product(context: ChaosContext) -> str:
    """The run's own product: created with the first input, so no other order moves its stock."""
    if id(context.stack) not in _products:
        product = f"chaos-{uuid.uuid4().hex[:10]}"
        context.client("dynamodb").put_item(
            TableName=context.outputs["InventoryTableName"],
            Item={"productId": {"S": product}, "name": {"S": product}, "price": {"N": str(PRICE)},
                  "stock": {"N": str(STOCK)}},
        )  # fmt: skip
        _products[id(context.stack)] = (product, STOCK)
    return _products[id(context.stack)][0]


def saga_orders(index: int, context: ChaosContext) -> dict[str, Any]:
    """The saga's input for one order of 1-3 units, written first as the order API would (ORDER#)."""
    order_id = f"chaos-order-{uuid.uuid4().hex[:12]}"
    quantity = index % 3 + 1
    now = datetime.now(UTC).isoformat()
    order = {
        "orderId": order_id,
        "customerId": f"chaos-{index:05d}",
        "items": [{"productId": _product(context), "quantity": quantity, "price": str(PRICE)}],
        "totalAmount": str(PRICE * quantity),
        "status": "PENDING",
        "createdAt": now,
        "updatedAt": now,
    }
    item = {"pk": f"ORDER#{order_id}", "sk": "ORDER", **order}
    context.client("dynamodb").put_item(
        TableName=context.outputs["OrdersTableName"],
        Item={key: _attribute(value) for key, value in item.items()},
    )
    return {"order": order}


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {"L": [_attribute(entry) for entry in value]}
    if isinstance(value, dict):
        return {"M": {key: _attribute(entry) for key, entry in value.items()}}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": str(value)}


def nothing_lost_or_done_twice(context: ChaosContext) -> list[str]:
    """The demo checker's invariants over the run's orders, from the tables alone."""
    orders = [execution.input["order"] for execution in context.executions]
    product = next((line["productId"] for order in orders for line in order["items"]), None)
    before = {product: _products[id(context.stack)][1]} if product and id(context.stack) in _products else {}
    snapshot = read_snapshot(context.stack, context.region, [o["orderId"] for o in orders], before, {})
    return [
        f"{check.name}: {violation}"
        for check in check_invariants(snapshot).checks
        if not check.skipped
        for violation in check.violations
    ]
