"""The outbox -> stream -> publisher -> saga flow on the embedded engine, real handlers running."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox.orders import OrdersClient
from sandbox.waiting import wait_until
from tests.integration.conftest import stock_of

pytestmark = pytest.mark.integration

FORWARD = ["ReserveInventory", "ChargePayment", "CreateShipment"]


def order_body(customer_id: str, product_id: str, quantity: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "customerId": customer_id,
        "items": [{"productId": product_id, "quantity": quantity, "price": 5.0}],
        **extra,
    }


def place_and_follow(
    api: OrdersClient, body: dict[str, Any], placed: dict[str, Any] | None = None
) -> dict[str, Any]:
    placed = placed or api.place_order(body)
    return api.follow_order(placed["orderId"], timeout=60)


def test_happy_path_completes_and_records_each_effect_once(api, tables, customer_id, make_product):
    # GIVEN a product with 10 in stock
    product = make_product(stock=10)
    # WHEN an order for 2 is placed and its saga runs
    order = place_and_follow(api, order_body(customer_id, product, quantity=2))
    # THEN the order completed through every forward step, once each
    assert order["status"] == "COMPLETED"
    assert order["sagaStatus"] == "SUCCEEDED"
    assert [step["name"] for step in order["steps"]] == [*FORWARD, "MarkOrderCompleted"]
    assert all(step["attempts"] == 1 and step["status"] == "SUCCEEDED" for step in order["steps"])
    assert order["compensations"] == []
    # AND stock, payment and shipment show the effects
    assert stock_of(tables, product) == 8
    payment = tables["payments"].get_item(Key={"orderId": order["orderId"]})["Item"]
    assert (payment["status"], payment["amount"]) == ("CHARGED", Decimal("10.00"))
    shipment = tables["shipments"].get_item(Key={"orderId": order["orderId"]})["Item"]
    assert shipment["status"] == "CREATED"
    # AND the outcome rule delivered the notification
    notified = wait_until(
        lambda: api.get_order(order["orderId"]).body["notifications"],
        timeout=60,
        what="the OrderCompleted notification",
    )
    assert [note["type"] for note in notified] == ["OrderCompleted"]


@pytest.mark.parametrize(
    ("step", "failed_state", "compensations"),
    [
        ("inventory", "ReserveInventory", ["ReleaseInventory"]),
        ("payment", "ChargePayment", ["RefundPayment", "ReleaseInventory"]),
        ("shipping", "CreateShipment", ["CancelShipment", "RefundPayment", "ReleaseInventory"]),
    ],
)
def test_failed_step_compensates_in_reverse_order(
    api, tables, customer_id, make_product, place_with_faults, step, failed_state, compensations
):
    # GIVEN a product with 10 in stock
    product = make_product(stock=10)
    # WHEN an order is placed whose `step` fails for good (before its handler runs)
    body = order_body(customer_id, product)
    order = place_and_follow(api, body, place_with_faults(body, fail=step))
    # THEN the order failed, with the compensations of the steps that succeeded and of the failed
    # step itself (its error is not a business error, so it may have landed), in reverse order
    assert order["status"] == "FAILED"
    assert order["compensations"] == compensations
    failed = next(s for s in order["steps"] if s["name"] == failed_state)
    assert failed["status"] == "FAILED"
    assert failed["attempts"] == 1  # a permanent failure is not retried
    assert order["failureReason"].startswith("InjectedFault: injected failure in " + step)
    # AND stock is back where it was, and no money was kept
    assert stock_of(tables, product) == 10
    payment = tables["payments"].get_item(Key={"orderId": order["orderId"]}).get("Item")
    shipment = tables["shipments"].get_item(Key={"orderId": order["orderId"]}).get("Item")
    # (a compensation of a step that never ran leaves a tombstone, so a late step changes nothing)
    statuses = {"inventory": (None, None), "payment": ("VOID", None), "shipping": ("REFUNDED", "VOID")}
    assert (payment and payment["status"], shipment and shipment["status"]) == statuses[step]


def test_flaky_step_retries_then_completes_with_one_charge(
    api, tables, customer_id, make_product, place_with_faults
):
    # GIVEN a payment step whose first two attempts fail transiently
    product = make_product(stock=10)
    # WHEN the order is placed
    body = order_body(customer_id, product)
    order = place_and_follow(api, body, place_with_faults(body, flaky={"payment": 2}))
    # THEN the step was retried and the order completed
    assert order["status"] == "COMPLETED"
    charge = next(s for s in order["steps"] if s["name"] == "ChargePayment")
    assert charge["attempts"] == 3
    assert charge["errors"] == ["Lambda.ServiceException", "Lambda.ServiceException"]
    # AND exactly one charge exists
    assert tables["payments"].get_item(Key={"orderId": order["orderId"]})["Item"]["status"] == "CHARGED"
    assert stock_of(tables, product) == 8


def test_out_of_stock_is_a_business_error_and_not_retried(api, tables, customer_id, make_product):
    # GIVEN a product with 1 in stock
    product = make_product(stock=1)
    # WHEN an order for 2 is placed
    order = place_and_follow(api, order_body(customer_id, product, quantity=2))
    # THEN the reservation failed once, nothing was compensated and stock is untouched
    assert order["status"] == "FAILED"
    assert order["steps"][0]["name"] == "ReserveInventory"
    assert order["steps"][0]["attempts"] == 1
    assert order["compensations"] == []
    assert order["failureReason"].startswith("OutOfStockError")
    assert stock_of(tables, product) == 1


def test_declined_payment_releases_the_reservation(api, tables, customer_id, make_product):
    # GIVEN an order whose total is over the card limit
    product = make_product(stock=10, price="6000.00")
    body = {"customerId": customer_id, "items": [{"productId": product, "quantity": 2, "price": 6000.0}]}
    # WHEN it is placed
    order = place_and_follow(api, body)
    # THEN payment was declined (not retried) and inventory released
    assert order["status"] == "FAILED"
    assert order["failureReason"].startswith("PaymentDeclinedError")
    assert order["compensations"] == ["ReleaseInventory"]
    assert stock_of(tables, product) == 10
