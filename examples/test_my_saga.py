"""How a user tests their own saga with the sandbox's pytest plugin: nothing here but its fixtures.

`pip install` of the sandbox registers the plugin. `sandbox_stack` starts an engine and deploys
the template once per session (`--sandbox-template path/to/template.yaml` for your own project;
`--sandbox-reuse` to use the engine `sandbox up` started); `place_order` places an order with
the demo's faults (fault rules the engine applies to that order alone) and waits until its saga
ends. Each order uses a product of its own, so tests can run in
any order, or at once, without seeing each other's stock.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox.testing import (
    assert_compensated,
    assert_completed,
    assert_exactly_once,
    assert_failed,
    assert_no_dead_letters,
    assert_states,
)

pytestmark = pytest.mark.integration


def test_a_happy_order_completes_once(place_order):
    order = place_order()
    assert_completed(order)
    assert_compensated(order, [])
    assert_exactly_once(order)


def test_a_failed_payment_is_compensated(place_order):
    order = place_order(fail="payment")
    assert_failed(order, "InjectedFault")
    assert_compensated(order, ["RefundPayment", "ReleaseInventory"])
    assert_exactly_once(order)
    # the order's saga as an execution: the states it ran, and the fault rule that broke it
    assert_states(order.execution, ["ReserveInventory", "ChargePayment", "RefundPayment", "ReleaseInventory",
                                    "MarkOrderFailed", "OrderFailed"])  # fmt: skip
    assert [fault["kind"] for fault in order.execution.injected_faults] == ["error"]


def test_a_duplicated_delivery_still_charges_once(place_order, sandbox_stack):
    order = place_order(duplicate_delivery=True)
    assert_completed(order)
    assert_exactly_once(order)
    assert_no_dead_letters(sandbox_stack, order)


def test_orders_running_at_once_each_end_as_their_faults_intend(place_order):
    faults = [{}, {"fail": "shipping"}, {"flaky": {"payment": 2}}, {"fail": "inventory"}] * 2
    with ThreadPoolExecutor(len(faults)) as pool:
        orders = list(pool.map(lambda fault: place_order(**fault), faults))
    for order, fault in zip(orders, faults, strict=True):
        if "fail" in fault:
            assert_failed(order, "InjectedFault")
        else:
            assert_completed(order)
        assert_exactly_once(order)
    assert_compensated(orders[1], ["CancelShipment", "RefundPayment", "ReleaseInventory"])
