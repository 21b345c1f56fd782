"""`run_order`, the library call behind `sandbox order`, with several orders running at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.faults import fault_book
from sandbox.runs import OrderAccepted, OrderEvent, OrderRequest, OrderRun, StepFinished, run_order

pytestmark = pytest.mark.integration


def test_concurrent_runs_each_end_as_their_faults_intend_and_report_their_own_events(
    api, stack, engine_settings, customer_id, make_product
):
    # GIVEN six orders of one product, with different faults, run by six clients at once
    product = make_product(stock=100)
    requests = {
        "happy": OrderRequest(customer_id, ({"productId": product, "quantity": 1},)),
        "failing": OrderRequest(customer_id, ({"productId": product, "quantity": 1},), {"fail": "payment"}),
        "flaky": OrderRequest(
            customer_id, ({"productId": product, "quantity": 1},), {"flaky": {"shipping": 2}}
        ),
        "poisoned": OrderRequest(customer_id, ({"productId": product, "quantity": 1},), {"poison": True}),
        "replayed": OrderRequest(customer_id, ({"productId": product, "quantity": 1},)),
        "accepted only": OrderRequest(customer_id, ({"productId": product, "quantity": 1},)),
    }
    events: dict[str, list[OrderEvent]] = {name: [] for name in requests}

    def run(name: str) -> OrderRun:
        return run_order(
            api, requests[name], wait_seconds=90, local=(stack, engine_settings.region),
            follow=name != "accepted only", replay=name == "replayed", on_event=events[name].append,
        )  # fmt: skip

    with ThreadPoolExecutor(len(requests)) as pool:
        runs = dict(zip(requests, pool.map(run, requests), strict=True))
    # THEN each ended as intended, and its events are its own: accepted first, then its steps
    assert {name: r.status for name, r in runs.items()} == {
        "happy": "COMPLETED", "failing": "FAILED", "flaky": "COMPLETED", "poisoned": "PENDING",
        "replayed": "COMPLETED", "accepted only": "PENDING",
    }  # fmt: skip
    assert all(r.is_as_expected for r in runs.values())
    for name, run_events in events.items():
        accepted = run_events[0]
        assert isinstance(accepted, OrderAccepted) and accepted.order_id == runs[name].order_id
        assert all(isinstance(event, StepFinished) for event in run_events[1:])
    assert [e.step["name"] for e in events["failing"][1:]] == [
        "ReserveInventory",
        "ChargePayment",
        "RefundPayment",
        "ReleaseInventory",
        "MarkOrderFailed",
    ]
    assert runs["failing"].final is not None and runs["failing"].final["compensations"] == [
        "RefundPayment",
        "ReleaseInventory",
    ]
    # AND the fault rules each order was given are gone once it was followed to its end
    order_ids = {r.order_id for r in runs.values()}
    left = [
        rule for rule in fault_book(stack).listed() if {rule.get("execution"), rule.get("record")} & order_ids
    ]
    assert left == []
    # AND the documents scripts read carry what happened
    documents: dict[str, Any] = {name: r.to_json() for name, r in runs.items()}
    assert documents["poisoned"]["deadLetter"]["condition"] == "RetryAttemptsExhausted"
    assert documents["replayed"]["replay"]["status"] == "SUCCEEDED"
    assert documents["flaky"]["steps"][2]["attempts"] == 3
    assert documents["accepted only"]["status"] == "PENDING" and "steps" not in documents["accepted only"]
    api.follow_order(runs["accepted only"].order_id, timeout=90)
