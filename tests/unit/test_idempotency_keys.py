"""Idempotency-Key headers: absent, present, empty or oversized; the same money is the same request."""

from __future__ import annotations

import importlib
from decimal import Decimal
from typing import Any

import pytest

from order_api.models import RequestError, parse_order_request


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")  # importing the handler builds its store
    return importlib.import_module("order_api.handler")


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({}, None),
        ({"content-type": "application/json"}, None),
        ({"idempotency-key": "k1"}, "k1"),
        ({"x-idempotency-key": " k2 "}, "k2"),
        ({"idempotency-key": "k" * 255}, "k" * 255),
    ],
)
def test_the_key_comes_from_either_header(handler: Any, headers: dict[str, str], key: str | None) -> None:
    assert handler.idempotency_key(headers) == key


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"idempotency-key": ""}, "the idempotency-key header is empty"),
        ({"x-idempotency-key": "   "}, "the x-idempotency-key header is empty"),
        ({"idempotency-key": "k" * 256}, "is 256 characters; the limit is 255"),
    ],
)
def test_an_empty_or_oversized_key_is_a_400_that_does_not_echo_it(
    handler: Any, headers: dict[str, str], words: str
) -> None:
    with pytest.raises(RequestError, match=words) as caught:
        handler.idempotency_key(headers)
    assert "kkkk" not in str(caught.value)


@pytest.mark.parametrize("price", ["12", "12.0", "12.00"])
def test_the_same_money_is_one_canonical_request(price: str) -> None:
    # GIVEN the same price written three ways
    body = '{"customerId": "c", "items": [{"productId": "mug", "quantity": 1, "price": ' + price + "}]}"
    request = parse_order_request(body)
    # THEN the request (what an idempotent retry is compared by) is the same
    assert request.items[0].price == Decimal("12.00")
    assert request.model_dump(mode="json")["items"][0]["price"] == "12.00"
