"""The order request model: what the API accepts, what it refuses and how it says so."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from order_api.models import MAX_BODY_BYTES, RequestError, parse_order_request


def body(**overrides: Any) -> str:
    order: dict[str, Any] = {
        "customerId": "c-1",
        "items": [
            {"productId": "espresso-beans", "quantity": 2, "price": 24.50},
            {"productId": "mug", "quantity": 1, "price": 12.00},
        ],
    }
    order.update(overrides)
    return json.dumps(order)


def item_body(**fields: Any) -> str:
    """A one-item order whose item has ``fields`` over a valid default."""
    item = {"productId": "mug", "quantity": 1, "price": 12.0, **fields}
    return json.dumps({"customerId": "c-1", "items": [item]})


def refused(raw: str | None) -> str:
    with pytest.raises(RequestError) as caught:
        parse_order_request(raw)
    return str(caught.value)


def test_valid_body_parses_and_total_is_computed_server_side() -> None:
    # GIVEN 2 x 24.50 + 1 x 12.00 and no total from the caller
    # WHEN the body is parsed
    request = parse_order_request(body())
    # THEN the total is computed here, exactly, as a two-place Decimal
    assert request.customerId == "c-1"
    assert [item.productId for item in request.items] == ["espresso-beans", "mug"]
    assert request.total_amount == Decimal("61.00")
    assert isinstance(request.total_amount, Decimal)
    assert str(request.total_amount) == "61.00"


def test_total_amount_is_exact_for_cent_prices() -> None:
    # GIVEN prices that are inexact as binary floats
    request = parse_order_request(item_body(price=0.10, quantity=3))
    # THEN the total is exact to the cent
    assert request.total_amount == Decimal("0.30")


def test_caller_supplied_total_is_refused() -> None:
    # GIVEN a caller trying to set its own total
    message = refused(body(totalAmount=1))
    # THEN the unknown field is named
    assert "totalAmount" in message


@pytest.mark.parametrize("raw", ['{"customerId": "c-1", "items": [', "not json", "{'a': 1}"])
def test_malformed_json_is_refused(raw: str) -> None:
    # WHEN the body is not JSON THEN the message says so, and nothing else
    assert refused(raw) == "request body is not valid JSON"


@pytest.mark.parametrize("raw", [None, ""])
def test_empty_body_is_refused_with_the_expected_shape(raw: str | None) -> None:
    message = refused(raw)
    assert "request body is required" in message
    assert "customerId" in message


def test_missing_customer_id_is_refused() -> None:
    raw = json.dumps({"items": [{"productId": "mug", "quantity": 1, "price": 12}]})
    message = refused(raw)
    assert message.startswith("customerId:")
    assert "required" in message.lower()


@pytest.mark.parametrize("items", [None, []])
def test_missing_or_empty_items_are_refused(items: list[Any] | None) -> None:
    order: dict[str, Any] = {"customerId": "c-1"}
    if items is not None:
        order["items"] = items
    assert refused(json.dumps(order)).startswith("items:")


@pytest.mark.parametrize("quantity", [0, -1])
def test_zero_and_negative_quantities_are_refused(quantity: int) -> None:
    message = refused(item_body(quantity=quantity))
    assert message.startswith("items.0.quantity:")
    assert "greater than 0" in message


@pytest.mark.parametrize("quantity", [2.0, "2", True])
def test_quantity_must_be_a_json_integer(quantity: Any) -> None:
    # GIVEN a quantity that only looks like an integer (strict mode: no coercion)
    message = refused(item_body(quantity=quantity))
    assert message.startswith("items.0.quantity:")
    assert "integer" in message


def test_quantity_over_the_limit_is_refused() -> None:
    assert refused(item_body(quantity=1001)).startswith("items.0.quantity:")


@pytest.mark.parametrize("price", ["abc", "12.00", True, None])
def test_price_must_be_a_number(price: Any) -> None:
    message = refused(item_body(price=price))
    assert message.startswith("items.0.price:")
    assert "price must be a number" in message


def test_price_with_three_decimals_is_refused() -> None:
    message = refused(item_body(price=12.345))
    assert message.startswith("items.0.price:")
    assert "2 decimal places" in message


@pytest.mark.parametrize("price", [0, -5])
def test_non_positive_price_is_refused(price: int) -> None:
    assert refused(item_body(price=price)).startswith("items.0.price:")


@pytest.mark.parametrize("raw_price", ["NaN", "Infinity"])
def test_non_finite_price_is_refused(raw_price: str) -> None:
    raw = '{"customerId": "c-1", "items": [{"productId": "mug", "quantity": 1, "price": ' + raw_price + "}]}"
    assert refused(raw).startswith("items.0.price:")


def test_duplicate_product_is_refused_naming_it() -> None:
    raw = json.dumps(
        {
            "customerId": "c-1",
            "items": [
                {"productId": "mug", "quantity": 1, "price": 12},
                {"productId": "mug", "quantity": 2, "price": 12},
            ],
        }
    )
    message = refused(raw)
    assert "productId mug appears twice" in message


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (body(coupon="FREE"), "coupon"),
        (item_body(discount=5), "items.0.discount"),
    ],
)
def test_unknown_fields_are_refused(raw: str, field: str) -> None:
    message = refused(raw)
    assert message.startswith(f"{field}:")
    assert "Extra inputs are not permitted" in message


def test_product_id_with_forbidden_characters_is_refused() -> None:
    assert refused(item_body(productId="mug; DROP TABLE")).startswith("items.0.productId:")


def test_body_over_the_limit_is_refused_naming_the_limit() -> None:
    # GIVEN a 1 MB body (valid JSON, padded with whitespace)
    raw = body() + " " * (1024 * 1024)
    # WHEN parsed THEN it is refused before JSON parsing, with its size and the limit
    message = refused(raw)
    assert str(MAX_BODY_BYTES) in message
    assert "65536" in message
    assert str(len(raw.encode())) in message


def test_body_size_is_counted_in_bytes_not_characters() -> None:
    # GIVEN a body under the limit in characters but over it in UTF-8 bytes
    raw = body(customerId="c-1") + "\u00e9" * (MAX_BODY_BYTES // 2 + 10)
    assert len(raw) < MAX_BODY_BYTES
    assert "limit" in refused(raw)


def test_body_exactly_at_the_limit_is_not_refused_for_size() -> None:
    raw = body()
    raw += " " * (MAX_BODY_BYTES - len(raw.encode()))
    assert len(raw.encode()) == MAX_BODY_BYTES
    assert parse_order_request(raw).total_amount == Decimal("61.00")


def test_several_problems_are_reported_on_one_line() -> None:
    raw = json.dumps({"customerId": "", "items": [{"productId": "mug", "quantity": 0, "price": 1}]})
    message = refused(raw)
    assert "\n" not in message
    assert "customerId:" in message
    assert "items.0.quantity:" in message
    assert "; " in message


# ---------------------------------------------------------------- faults are not the API's business


@pytest.mark.parametrize(
    "faults", [{"fail": "payment"}, {"flaky": {"payment": 2}}, {"poison": True}, {}, None]
)
def test_an_order_carrying_faults_is_refused_as_an_unknown_field(faults: dict[str, Any] | None) -> None:
    # GIVEN a body from a client that still sends faults (they are now rules at the invoke boundary)
    # WHEN parsed THEN it is a 400 naming the field, like any other field the API does not know
    message = refused(body(faults=faults))
    assert message.startswith("faults:")
    assert "Extra inputs are not permitted" in message


def test_blank_customer_id_is_refused() -> None:
    body = json.dumps({"customerId": "   ", "items": [{"productId": "mug", "quantity": 1, "price": 12}]})
    with pytest.raises(RequestError, match="customerId"):
        parse_order_request(body)
