"""`sandbox order` with faults: the order gets a key, its rules are set on the id that key names
before it is placed, and they are cleared once it is followed to its end."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import demo_faults
from sandbox.demo_faults import order_id_for_key
from sandbox.errors import UsageError
from sandbox.orders import ApiResponse
from sandbox.runs import OrderRequest, run_order

LOCAL: Any = (object(), "us-east-1")  # a local stack: only the (faked) fault book would use it


class FakeClient:
    """The order API: answers each POST with the id the key names, and a final order when followed."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def submit_order(self, payload: dict[str, Any], idempotency_key: str | None = None) -> ApiResponse:
        self.log.append(("post", (payload, idempotency_key)))
        order_id = order_id_for_key(idempotency_key) if idempotency_key else "random-id"
        return ApiResponse(201, {"orderId": order_id, "status": "PENDING", "totalAmount": 12}, b"")

    def follow_order(self, order_id: str, *, timeout: float, on_change: Any) -> dict[str, Any]:
        self.log.append(("follow", order_id))
        return {"orderId": order_id, "status": "FAILED", "steps": []}


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What happened, in order: rules set and cleared, the POST, the follow."""
    events: list[tuple[str, Any]] = []

    class FakeOrderFaults:
        def __init__(self, stack: Any, region: str) -> None:
            pass

        def add(self, orders: Any) -> list[str]:
            events.append(("rules", list(orders)))
            return ["f1", "f2"]

        def clear(self, rule_ids: list[str]) -> None:
            events.append(("cleared", rule_ids))

    monkeypatch.setattr(demo_faults, "OrderFaults", FakeOrderFaults)
    return events


def test_an_order_with_faults_gets_a_key_and_its_rules_before_it_is_placed(
    log: list[tuple[str, Any]],
) -> None:
    # GIVEN an order that should fail in payment, sent without a key
    request = OrderRequest(faults={"fail": "payment"})
    # WHEN it runs and is followed to its end
    run = run_order(FakeClient(log), request, local=LOCAL)
    # THEN a key was made, the rules were set on the id it names, then the order was sent with that key
    (kind, rules), (post, (payload, key)), follow, cleared = log
    assert (kind, post) == ("rules", "post")
    assert key and rules == [(order_id_for_key(key), {"fail": "payment"})]
    assert run.order_id == order_id_for_key(key)
    # AND the body carried no faults, and the rules were cleared once the saga was followed
    assert set(payload) == {"customerId", "items"}
    assert follow == ("follow", run.order_id)
    assert cleared == ("cleared", ["f1", "f2"])


def test_the_users_own_key_names_the_order_its_rules_are_set_on(log: list[tuple[str, Any]]) -> None:
    run_order(FakeClient(log), OrderRequest(faults={"poison": True}, idempotency_key="mine"), local=LOCAL,
              follow=False)  # fmt: skip
    assert log[0] == ("rules", [(order_id_for_key("mine"), {"poison": True})])
    assert log[1] == ("post", ({"customerId": "demo-customer", "items": list(OrderRequest().items)}, "mine"))


def test_an_order_not_followed_keeps_its_rules_until_they_lapse(log: list[tuple[str, Any]]) -> None:
    # GIVEN --no-wait: the saga runs after the command returns, and must still meet its faults
    run_order(FakeClient(log), OrderRequest(faults={"fail": "shipping"}), local=LOCAL, follow=False)
    assert [kind for kind, _ in log] == ["rules", "post"]


def test_an_order_without_faults_sets_no_rule_and_keeps_its_key(log: list[tuple[str, Any]]) -> None:
    run_order(FakeClient(log), OrderRequest(), local=LOCAL, follow=False)
    assert log == [("post", ({"customerId": "demo-customer", "items": list(OrderRequest().items)}, None))]


def test_faults_on_aws_are_refused_before_anything_is_sent(log: list[tuple[str, Any]]) -> None:
    with pytest.raises(UsageError, match="AWS has no such hook"):
        run_order(FakeClient(log), OrderRequest(faults={"fail": "payment"}), local=None)
    assert log == []
