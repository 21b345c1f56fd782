"""The console's order form -> an order request, as `sandbox order`'s flags would make it."""

from __future__ import annotations

import pytest

from sandbox.console.forms import FormError, parse_order_form


def test_an_empty_form_is_the_default_order():
    request = parse_order_form({})

    assert request.customer_id == "console"
    assert request.items == (
        {"productId": "espresso-beans", "quantity": 1},
        {"productId": "mug", "quantity": 2},
    )
    assert request.faults is None


def test_every_fault_switch_becomes_the_fault_the_cli_would_send():
    request = parse_order_form(
        {"customer": "ana", "items": "grinder:1", "fail": "shipping", "flaky": "payment:2, inventory:1",
         "timeout": "payment", "hang": "", "crash": True, "duplicateDelivery": True, "poison": False,
         "idempotencyKey": "k1"}
    )  # fmt: skip

    assert request.faults == {
        "fail": "shipping",
        "timeout": "payment",
        "flaky": {"payment": 2, "inventory": 1},
        "crash": "publisher",
        "duplicateDelivery": True,
    }
    assert request.idempotency_key == "k1" and request.customer_id == "ana"
    assert request.expected_status == "FAILED"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"hang": "warehouse"}, "hang: 'warehouse' is not a step"),
        ({"flaky": "payment:0"}, "give 1 to 3"),
        ({"items": "mug:1001"}, "is not a whole number 1-1000"),
        ({"items": " , "}, "order at least one product"),
        ({"items": "../x:1"}, "is not PRODUCT:QUANTITY"),
        ({"customer": 7}, "customer: expected text, got int"),
        ({"idempotencyKey": "k" * 256}, "idempotencyKey: at most 255 characters"),
    ],
)
def test_a_bad_field_is_named(form: dict, message: str):
    with pytest.raises(FormError, match=message.replace("(", r"\(")):
        parse_order_form(form)
