"""Infrastructure faults: each is injected for real and its effects are applied exactly once.

For every fault the test checks, from the tables and the executions: one saga execution per order
(plus the replay where asked), at most one charge and one shipment, stock conserved, and the final
status the fault implies.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.demo_faults import OrderFaults, order_id_for_key
from sandbox.dlq import list_dead_letters, redrive
from sandbox.faults import fault_book
from sandbox.orders import OrdersClient
from sandbox.saga import executions_of, replay_saga
from sandbox.settings import Settings
from sandbox.stack import LocalStack, physical_id
from sandbox.trace import trace_order
from sandbox.waiting import wait_until
from tests.integration.conftest import outbox_paused, stock_of

pytestmark = pytest.mark.integration
QUANTITY = 2


def order_with(
    api: OrdersClient, stack: LocalStack, region: str, customer_id: str, product: str, faults: dict[str, Any]
) -> str:
    """Place an order with the demo's faults: their rules are set for its id (from its key) first."""
    key = uuid.uuid4().hex
    OrderFaults(stack, region).add([(order_id_for_key(key), faults)])
    body = {"customerId": customer_id, "items": [{"productId": product, "quantity": QUANTITY, "price": 5.0}]}
    return str(api.place_order(body, key)["orderId"])


def log_lines(stack: LocalStack, settings: Settings, logical_id: str, order_id: str, text: str) -> list[str]:
    """The function's log messages for this order that contain ``text``."""
    logs = stack.client("logs", settings.region)
    group = f"/aws/lambda/{physical_id(stack, settings.region, settings.stack_name, logical_id)}"
    events = logs.filter_log_events(logGroupName=group, filterPattern=f'"{order_id}"')["events"]
    return [event["message"] for event in events if text in event["message"]]


def assert_effects_once(stack: LocalStack, settings: Settings, tables: dict[str, Any], order_id: str,
                        product: str, *, status: str, executions: int = 1) -> dict[str, Any]:  # fmt: skip
    """One execution (plus replays), one charge, one shipment, stock conserved, the final status."""
    names = [execution["name"] for execution in executions_of(stack, settings.region, order_id)]
    assert len(names) == executions, names
    assert names.count(order_id) == 1
    order = tables["orders"].get_item(Key={"pk": f"ORDER#{order_id}", "sk": "ORDER"}, ConsistentRead=True)[
        "Item"
    ]
    assert order["status"] == status
    payment = tables["payments"].get_item(Key={"orderId": order_id}, ConsistentRead=True).get("Item")
    shipment = tables["shipments"].get_item(Key={"orderId": order_id}, ConsistentRead=True).get("Item")
    expected_stock = 10 - QUANTITY if status == "COMPLETED" else 10
    assert stock_of(tables, product) == expected_stock
    if status == "COMPLETED":
        assert payment["status"] == "CHARGED" and shipment["status"] == "CREATED"
    return {"order": order, "payment": payment, "shipment": shipment}


def test_duplicate_delivery_starts_one_saga_and_charges_once(
    api, stack, engine_settings, tables, customer_id, make_product
):
    # GIVEN an order whose outbox record the stream delivers again after the publisher published it
    product = make_product(stock=10)
    order_id = order_with(
        api, stack, engine_settings.region, customer_id, product, {"duplicateDelivery": True}
    )
    # WHEN its saga ends
    order = api.follow_order(order_id, timeout=120)
    # THEN the record reached the publisher twice…
    delivered = wait_until(
        lambda: len(log_lines(stack, engine_settings, "OutboxPublisherFunction", order_id, "outbox record published"))
        >= 2, timeout=90, what="the second delivery")  # fmt: skip
    assert delivered
    # …but only one saga ran and every effect happened once
    assert order["status"] == "COMPLETED"
    assert_effects_once(stack, engine_settings, tables, order_id, product, status="COMPLETED")
    # AND the trace shows both deliveries, the first marked with the injected fault, the second
    # finding the saga started
    deliveries = [e for e in trace_order(stack, engine_settings, order_id).entries if e.kind == "delivery"]
    assert [e.status for e in deliveries] == ["SUCCEEDED", "SUCCEEDED"]
    assert "injected duplicate-delivery" in deliveries[0].detail
    assert "already started" in deliveries[1].detail


def test_publisher_crash_after_starting_the_saga_does_not_start_a_second(
    api, stack, engine_settings, tables, customer_id, make_product
):
    # GIVEN a publisher whose worker dies after starting the saga, before acknowledging the record
    product = make_product(stock=10)
    order_id = order_with(api, stack, engine_settings.region, customer_id, product, {"crash": "publisher"})
    order = api.follow_order(order_id, timeout=120)
    # THEN the record was delivered again after the crash
    redelivered = wait_until(
        lambda: len(log_lines(stack, engine_settings, "OutboxPublisherFunction", order_id, "outbox record published"))
        >= 2, timeout=90, what="the redelivery after the crash")  # fmt: skip
    assert redelivered
    # AND the redelivery found the saga already started
    assert order["status"] == "COMPLETED"
    assert_effects_once(stack, engine_settings, tables, order_id, product, status="COMPLETED")
    deliveries = [e for e in trace_order(stack, engine_settings, order_id).entries if e.kind == "delivery"]
    assert [e.status for e in deliveries] == ["CRASHED", "SUCCEEDED"]


def test_step_timeout_is_retried_and_the_late_attempt_changes_nothing(
    api, stack, engine_settings, tables, customer_id, make_product, sandbox_clock
):
    # GIVEN a reservation whose first attempt outlives the Task's TimeoutSeconds, on a saga clock
    # ten times faster (the same timeout, retry and late completion, in a tenth of the time)
    sandbox_clock(10)
    product = make_product(stock=10)
    order_id = order_with(api, stack, engine_settings.region, customer_id, product, {"timeout": "inventory"})
    order = api.follow_order(order_id, timeout=120)
    # THEN the state timed out once and its retry completed the order
    reserve = order["steps"][0]
    assert (reserve["name"], reserve["attempts"], reserve["errors"]) == (
        "ReserveInventory",
        2,
        ["States.Timeout"],
    )
    assert order["status"] == "COMPLETED"
    # AND once the slow first attempt finished too, stock was still taken only once
    wait_until(lambda: len(log_lines(stack, engine_settings, "InventoryFunction", order_id, "ReserveInventory done"))
               >= 2, timeout=90, what="the slow first attempt to finish")  # fmt: skip
    assert_effects_once(stack, engine_settings, tables, order_id, product, status="COMPLETED")


def test_replay_repeats_no_side_effect(api, stack, engine_settings, tables, customer_id, make_product):
    # GIVEN a completed order
    product = make_product(stock=10)
    order_id = order_with(api, stack, engine_settings.region, customer_id, product, {})
    api.follow_order(order_id, timeout=120)
    # WHEN its saga is started again with the same input, as an operator redrive would
    replay = replay_saga(stack, engine_settings.region, order_id)
    # THEN the replay succeeds and no effect is applied twice
    assert replay["status"] == "SUCCEEDED"
    assert_effects_once(stack, engine_settings, tables, order_id, product, status="COMPLETED", executions=2)
    # AND the trace shows the replay, its steps answered from their idempotency records
    replayed = [e for e in trace_order(stack, engine_settings, order_id).entries if e.source == "replay"]
    assert replayed and replayed[0].detail == f"replay {replay['name']}"
    assert any("idempotent" in e.detail for e in replayed if e.name == "ChargePayment")


def test_poisoned_record_is_dead_lettered_then_redriven(
    api, stack, engine_settings, tables, customer_id, make_product
):
    # GIVEN an order whose outbox record the publisher cannot read
    product = make_product(stock=10)
    order_id = order_with(api, stack, engine_settings.region, customer_id, product, {"poison": True})
    # WHEN the publisher has retried it as configured
    letter = wait_until(
        lambda: next((d for d in list_dead_letters(stack, engine_settings.region) if order_id in d.order_ids), None),
        timeout=60, what="the poisoned record in the on-failure queue")  # fmt: skip
    # THEN it is in the on-failure queue, and no saga started
    assert letter.condition == "RetryAttemptsExhausted"
    assert executions_of(stack, engine_settings.region, order_id) == []
    assert stock_of(tables, product) == 10
    # WHEN it is redriven
    publisher = physical_id(
        stack, engine_settings.region, engine_settings.stack_name, "OutboxPublisherFunction"
    )
    results = [r for r in redrive(stack, engine_settings.region, publisher) if order_id in r["orderIds"]]
    assert [r["redriven"] for r in results] == [True]
    # THEN the order completes once, and the queue no longer holds it
    assert api.follow_order(order_id, timeout=120)["status"] == "COMPLETED"
    assert_effects_once(stack, engine_settings, tables, order_id, product, status="COMPLETED")
    assert all(order_id not in d.order_ids for d in list_dead_letters(stack, engine_settings.region))


def test_only_the_poisoned_records_of_a_concurrent_burst_are_dead_lettered_and_redrive_is_idempotent(
    api, stack, engine_settings, tables, make_product
):
    # GIVEN twelve orders placed at once by six clients while the outbox is paused, so the stream
    # delivers them in one batch, and two of them poisoned
    product = make_product(stock=100)
    poisoned_at = {3, 8}

    def place(index: int) -> str:
        faults = {"poison": True} if index in poisoned_at else {}
        return order_with(
            api, stack, engine_settings.region, f"cust-{uuid.uuid4().hex[:12]}", product, faults
        )

    with outbox_paused(stack, engine_settings), ThreadPoolExecutor(6) as pool:
        order_ids = list(pool.map(place, range(12)))
    poisoned = sorted(order_ids[index] for index in poisoned_at)
    healthy = [order_id for order_id in order_ids if order_id not in poisoned]

    def ours() -> list[Any]:
        return [
            d for d in list_dead_letters(stack, engine_settings.region) if set(d.order_ids) & set(order_ids)
        ]

    # WHEN the publisher has retried what failed as configured
    letters = wait_until(lambda: (found := ours()) and len(found) >= 2 and found, timeout=90,
                         what="the two poisoned records in the on-failure queue")  # fmt: skip
    # THEN every healthy order of the batch completed with one saga, and the on-failure queue
    # holds exactly the poisoned records, each alone in its letter
    assert [api.follow_order(order_id, timeout=120)["status"] for order_id in healthy] == ["COMPLETED"] * 10
    assert sorted(order_id for letter in letters for order_id in letter.order_ids) == poisoned
    assert all(len(letter.records) == 1 for letter in letters)
    assert [len(executions_of(stack, engine_settings.region, o)) for o in order_ids] == [
        0 if o in poisoned else 1 for o in order_ids
    ]
    # WHEN the poison is cleared (the rules of those two records) and the queue is redriven twice
    book = fault_book(stack)
    book.clear_rules([rule["id"] for rule in book.listed() if rule.get("record") in poisoned])
    publisher = physical_id(
        stack, engine_settings.region, engine_settings.stack_name, "OutboxPublisherFunction"
    )
    first = [
        r for r in redrive(stack, engine_settings.region, publisher) if set(r["orderIds"]) & set(order_ids)
    ]
    second = [
        r for r in redrive(stack, engine_settings.region, publisher) if set(r["orderIds"]) & set(order_ids)
    ]
    # THEN the first sent exactly the poisoned records and the second had nothing left to send
    assert sorted(order_id for r in first for order_id in r["resent"]) == poisoned
    assert all(r["redriven"] for r in first) and second == []
    # AND every order completed once: twelve sagas, twelve charges, stock down by twelve orders
    assert [api.follow_order(order_id, timeout=120)["status"] for order_id in poisoned] == ["COMPLETED"] * 2
    assert [len(executions_of(stack, engine_settings.region, o)) for o in order_ids] == [1] * 12
    assert stock_of(tables, product) == 100 - 12 * QUANTITY
    assert ours() == []


def test_faults_combine(api, stack, engine_settings, tables, customer_id, make_product):
    # GIVEN a failing shipment and a duplicated delivery, then a replay
    product = make_product(stock=10)
    order_id = order_with(
        api,
        stack,
        engine_settings.region,
        customer_id,
        product,
        {"fail": "shipping", "duplicateDelivery": True},
    )
    order = api.follow_order(order_id, timeout=120)
    replay = replay_saga(stack, engine_settings.region, order_id)
    # THEN the order failed and was compensated once, whatever was delivered or replayed
    assert order["compensations"] == ["CancelShipment", "RefundPayment", "ReleaseInventory"]
    assert replay["status"] == "FAILED"
    effects = assert_effects_once(
        stack, engine_settings, tables, order_id, product, status="FAILED", executions=2
    )
    assert effects["payment"]["status"] == "REFUNDED"
    # (the shipment never ran: its compensation left a tombstone, so a late one would change nothing)
    assert effects["shipment"]["status"] == "VOID"
    assert order["failureReason"].startswith("InjectedFault: injected failure in shipping")


def test_a_step_that_always_times_out_is_compensated_itself_and_its_late_work_undone(
    api, stack, engine_settings, tables, customer_id, make_product, sandbox_clock
):
    # GIVEN an order whose payment outlives its timeout on every attempt, then does its work anyway
    # (on the saga clock at 10x: the same saga, its timeouts and late attempts in a tenth of the time)
    sandbox_clock(10)
    product = make_product(stock=10)
    order_id = order_with(api, stack, engine_settings.region, customer_id, product, {"hang": "payment"})
    # WHEN the saga gives up on it
    order = api.follow_order(order_id, timeout=120)
    # THEN the order failed on the timeout, and the payment was compensated too, before the stock
    assert order["status"] == "FAILED"
    assert order["failureReason"].startswith("States.Timeout")
    assert order["compensations"] == ["RefundPayment", "ReleaseInventory"]
    # AND once every late attempt has finished (the first charged; the others found its record),
    # nothing is held: the charge that landed was refunded, the stock is back, nothing shipped
    wait_until(lambda: len(log_lines(stack, engine_settings, "PaymentFunction", order_id, "ChargePayment done"))
               >= 4, timeout=90, what="the four late ChargePayment attempts to finish")  # fmt: skip
    effects = assert_effects_once(stack, engine_settings, tables, order_id, product, status="FAILED")
    assert effects["payment"]["status"] == "REFUNDED"
    assert effects["shipment"] is None
    reservation = tables["reservations"].get_item(Key={"orderId": order_id}, ConsistentRead=True)["Item"]
    assert reservation["status"] == "RELEASED"


@pytest.mark.parametrize(
    ("function", "undo", "step", "table"),
    [
        ("InventoryFunction", "release", "reserve", "reservations"),
        ("PaymentFunction", "refund", "charge", "payments"),
        ("ShippingFunction", "cancel", "create", "shipments"),
    ],
)
def test_a_step_arriving_after_its_compensation_changes_nothing(
    stack, engine_settings, tables, customer_id, make_product, function, undo, step, table
):
    # GIVEN an order whose step the saga compensated before the step itself landed (it timed out
    # and is still running somewhere): the compensation found nothing and left a tombstone
    product = make_product(stock=10)
    order = {"orderId": str(uuid.uuid4()), "customerId": customer_id, "totalAmount": "10.00",
             "items": [{"productId": product, "quantity": QUANTITY}]}  # fmt: skip
    lam = stack.client("lambda", engine_settings.region)
    name = physical_id(stack, engine_settings.region, engine_settings.stack_name, function)

    def invoke(action: str) -> dict[str, Any]:
        response = lam.invoke(FunctionName=name, Payload=json.dumps({"action": action, "order": order}))
        return {"error": response.get("FunctionError"), **json.loads(response["Payload"].read())}

    assert invoke(undo)["status"].startswith("NOTHING_TO_")
    # WHEN the step arrives late
    late = invoke(step)
    # THEN it fails as already compensated, and nothing was reserved, charged or shipped
    assert late["error"] and late["errorType"] == "StepAlreadyCompensatedError", late
    assert stock_of(tables, product) == 10
    record = tables[table].get_item(Key={"orderId": order["orderId"]}, ConsistentRead=True)["Item"]
    assert record["status"] == "VOID"


def test_replaying_orders_that_failed_out_of_stock_moves_nothing(
    api, stack, engine_settings, tables, make_product
):
    # GIVEN four orders that failed because another order held all the stock
    product = make_product(stock=0)
    with ThreadPoolExecutor(4) as pool:
        order_ids = list(
            pool.map(
                lambda _: order_with(
                    api, stack, engine_settings.region, f"cust-{uuid.uuid4().hex[:12]}", product, {}
                ),
                range(4),
            )
        )
        failed = list(pool.map(lambda order_id: api.follow_order(order_id, timeout=120), order_ids))
    assert all(f["status"] == "FAILED" and f["failureReason"].startswith("OutOfStockError") for f in failed)
    # AND that other order has since failed and given the stock back
    tables["inventory"].update_item(
        Key={"productId": product},
        UpdateExpression="SET stock = :stock",
        ExpressionAttributeValues={":stock": 10},
    )
    # WHEN the failed orders' sagas are replayed at once with their original input (an operator redrive)
    with ThreadPoolExecutor(4) as pool:
        replays = list(
            pool.map(lambda order_id: replay_saga(stack, engine_settings.region, order_id), order_ids)
        )
    # THEN each replay met the business failure its first run stored, and ran no step: the orders
    # stay FAILED for the same reason, and nothing was reserved, charged or shipped, not even to be undone
    assert [replay["status"] for replay in replays] == ["FAILED"] * 4
    for order_id in order_ids:
        effects = assert_effects_once(
            stack, engine_settings, tables, order_id, product, status="FAILED", executions=2
        )
        assert effects["order"]["failureReason"].startswith("OutOfStockError")
        assert effects["payment"] is None and effects["shipment"] is None
        assert (
            tables["reservations"].get_item(Key={"orderId": order_id}, ConsistentRead=True).get("Item")
            is None
        )
