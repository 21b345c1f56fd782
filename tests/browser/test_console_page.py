"""The console's page, driven in headless Chromium against the session's engine."""

from __future__ import annotations

import pytest

from sandbox.orders import OrdersClient
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.trace import trace_order
from sandbox.waiting import wait_until
from tests.browser.conftest import ConsolePage

pytestmark = pytest.mark.integration


def test_a_failed_shipping_order_shows_its_compensations(
    page: ConsolePage, api: OrdersClient, stack: LocalStack, engine_settings: Settings
):
    # GIVEN the page, WHEN a --fail shipping order is placed from its form
    order_id = page.place(fail="shipping")

    # THEN it appears in the live list, without a reload, and ends FAILED there
    assert page.wait_for_status(order_id) == "FAILED"
    assert "InjectedFault" in page.text_of(f'#order-list li[data-order-id="{order_id}"]')

    # WHEN it is opened, THEN its graph marks the path: two steps succeeded, shipping failed, then
    # the shipment (it may have landed: the saga cannot tell), the payment and the reservation undone
    page.open_order(order_id)
    reserve, charge, ship = (
        page.node(name) for name in ("ReserveInventory", "ChargePayment", "CreateShipment")
    )
    assert reserve["outcome"] == charge["outcome"] == "succeeded"
    assert ship["outcome"] == "failed" and "InjectedFault" in ship["text"]
    cancel, refund, release = (
        page.node(name) for name in ("CancelShipment", "RefundPayment", "ReleaseInventory")
    )
    assert cancel["outcome"] == refund["outcome"] == release["outcome"] == "compensation"
    assert ship["sequence"] < cancel["sequence"] < refund["sequence"] < release["sequence"]
    assert page.node("MarkOrderCompleted")["outcome"] == "not-reached"
    assert page.node("OrderFailed")["outcome"] == "failed"
    assert page.text_of("#order-status") == "FAILED"

    # AND the timeline beside it holds what `sandbox trace --json` says, once the story is complete
    wait_until(lambda: api.get_order(order_id).body["notifications"], timeout=30, what="the notification")
    entries = trace_order(stack, engine_settings, order_id).to_json()["entries"]
    expected = [(entry["kind"], entry["name"]) for entry in entries]
    assert ("notification", "OrderFailed") in expected
    page.wait(lambda: page.timeline() == expected, "the page's timeline to be the trace's")

    # AND a click on the failed state shows its error and attempts
    detail = page.select_state("CreateShipment")
    assert "InjectedFault" in detail and "injected failure in shipping" in detail
    page.screenshot("console-failed")


def test_a_flaky_order_shows_its_attempt_count(page: ConsolePage):
    # WHEN an order whose payment fails twice, transiently, is placed from the page
    order_id = page.place(flakyStep="payment", flakyAttempts="2")

    # THEN the retries won: it completes, and ChargePayment shows its three attempts
    assert page.wait_for_status(order_id) == "COMPLETED"
    page.open_order(order_id)
    charge = page.node("ChargePayment")
    assert charge["outcome"] == "retried"
    assert charge["attempts"] == 3
    assert "×3" in charge["text"] and "after 3 attempts" in charge["text"]
    assert page.node("CreateShipment")["outcome"] == "succeeded"
    assert page.node("RefundPayment")["outcome"] == "not-reached"
    page.select_state("ChargePayment")
    page.wait(
        lambda: page.text_of("#state-detail").count("Lambda.ServiceException") == 2,
        "ChargePayment's two failed attempts in its details",
    )
    page.wait(lambda: ("execution-end", "ExecutionSucceeded") in page.timeline(), "the execution's end")
    page.screenshot("console-flaky")


def test_a_happy_order_runs_the_whole_forward_path(page: ConsolePage):
    order_id = page.place()

    assert page.wait_for_status(order_id) == "COMPLETED"
    page.open_order(order_id)
    for name in ("ReserveInventory", "ChargePayment", "CreateShipment", "MarkOrderCompleted"):
        assert page.node(name)["outcome"] == "succeeded", name
    for name in ("CancelShipment", "RefundPayment", "ReleaseInventory", "MarkOrderFailed"):
        assert page.node(name)["outcome"] == "not-reached", name
    page.wait(
        lambda: (
            {("notification", "OrderCompleted"), ("execution-end", "ExecutionSucceeded")}
            <= set(page.timeline())
        ),
        "the timeline's notification and the execution's end",
    )
    page.screenshot("console-happy")


def test_a_malformed_form_is_refused_on_the_page_and_places_nothing(page: ConsolePage, api: OrdersClient):
    newest = api.list_orders(limit=1)

    page.fill(items="mug:zero")
    order_id, answer = page.submit()

    assert order_id is None
    assert "items: quantity 'zero' of mug is not a whole number" in answer
    assert api.list_orders(limit=1) == newest


def test_an_order_opened_by_an_unknown_id_says_so(page: ConsolePage):
    page.driver.get(page.url + "#/orders/5d1b7c9e-0000-4000-8000-000000000000")

    meta = page.wait(
        lambda: "not found" in (text := page.find("#order-meta").text) and text, "the page's answer"
    )

    assert "order 5d1b7c9e-0000-4000-8000-000000000000 not found" in meta
