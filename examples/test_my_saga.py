"""How a user tests their own saga with the sandbox's pytest plugin: nothing here but its fixtures.

`pip install` of the sandbox registers the plugin. `sandbox_stack` starts an engine and deploys
the template once per session (`--sandbox-template path/to/template.yaml` for your own project;
`--sandbox-reuse` to use the engine `sandbox up` started); `place_order` places an order with
faults and waits until its saga ends. Each order uses a product of its own, so tests can run in
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
)

pytestmark = pytest.mark.integration


def test_a_happy_order_completes_once(place_order):
    order = place_order()
    assert_completed(order)
    assert_compensated(order, [])
    assert_exactly_once(order)


def test_a_declined_payment_is_compensated(place_order):
    order = place_order(fail="payment")
    assert_failed(order, "InjectedFailure")
    assert_compensated(order, ["ReleaseInventory"])
    assert_exactly_once(order)


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
            assert_failed(order, "InjectedFailure")
        else:
            assert_completed(order)
        assert_exactly_once(order)
    assert_compensated(orders[1], ["RefundPayment", "ReleaseInventory"])
