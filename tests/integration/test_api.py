"""The order API over HTTP: idempotency keys, lookups and bad input."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from sandbox.orders import OrdersClient, call_api
from tests.integration.conftest import records_of_customer

pytestmark = pytest.mark.integration


def body_for(customer_id: str, product_id: str, quantity: int = 1) -> dict:
    return {
        "customerId": customer_id,
        "items": [{"productId": product_id, "quantity": quantity, "price": 5.0}],
    }


def test_order_without_key_is_not_deduplicated(api: OrdersClient, customer_id, make_product):
    # GIVEN the same body sent twice without an idempotency key
    body = body_for(customer_id, make_product())
    first, second = api.post_order(body), api.post_order(body)
    # THEN two orders exist
    assert first.status == second.status == 201
    assert first.body["orderId"] != second.body["orderId"]
    assert first.body["status"] == "PENDING"
    assert first.body["totalAmount"] == 5
    assert first.body["message"] == "Order created successfully"


def test_same_key_and_payload_replays_the_first_response(api, tables, customer_id, make_product):
    # GIVEN an order placed with an idempotency key
    body = body_for(customer_id, make_product())
    first = api.post_order(body, idempotency_key=f"key-{customer_id}")
    # WHEN the same request is sent again
    again = api.post_order(body, idempotency_key=f"key-{customer_id}")
    # THEN the first response is replayed byte for byte and nothing new is created
    assert first.status == again.status == 201
    assert again.raw == first.raw
    orders = [item for item in records_of_customer(tables, customer_id) if item["sk"] == "ORDER"]
    assert [item["orderId"] for item in orders] == [first.body["orderId"]]


def test_new_key_creates_a_new_order(api, customer_id, make_product):
    body = body_for(customer_id, make_product())
    first = api.post_order(body, idempotency_key=f"a-{customer_id}")
    second = api.post_order(body, idempotency_key=f"b-{customer_id}")
    assert first.body["orderId"] != second.body["orderId"]


def test_same_key_with_different_payload_is_422_and_creates_nothing(api, tables, customer_id, make_product):
    # GIVEN a key already used for one body
    product = make_product()
    key = f"key-{customer_id}"
    first = api.post_order(body_for(customer_id, product, quantity=1), idempotency_key=key)
    # WHEN the key is reused with another body
    reused = api.post_order(body_for(customer_id, product, quantity=3), idempotency_key=key)
    # THEN it is refused with 422 and only the first order exists
    assert reused.status == 422
    assert reused.body["message"] == "this Idempotency-Key was already used with a different request body"
    assert key.encode() not in reused.raw  # never echoed back
    orders = [item for item in records_of_customer(tables, customer_id) if item["sk"] == "ORDER"]
    assert [item["orderId"] for item in orders] == [first.body["orderId"]]


def test_x_idempotency_key_header_is_accepted(api, customer_id, make_product):
    body = json.dumps(body_for(customer_id, make_product())).encode()
    headers = {"x-idempotency-key": f"x-{customer_id}"}
    first = call_api("POST", f"{api.api_url}/orders", body=body, headers=headers)
    second = call_api("POST", f"{api.api_url}/orders", body=body, headers=headers)
    assert first.status == 201
    assert second.raw == first.raw


def test_unknown_order_is_404(api):
    response = api.get_order("no-such-order")
    assert response.status == 404
    assert "no-such-order" in response.body["message"]


def test_order_is_readable_with_its_saga(api, customer_id, make_product):
    placed = api.place_order(body_for(customer_id, make_product()))
    order = api.follow_order(placed["orderId"], timeout=60)
    assert order["orderId"] == placed["orderId"]
    assert order["customerId"] == customer_id
    assert order["items"] == [{"productId": order["items"][0]["productId"], "quantity": 1, "price": 5}]
    listed = api.list_orders()
    assert placed["orderId"] in [entry["orderId"] for entry in listed]


BAD_BODIES = {
    "malformed JSON": (lambda c, p: b'{"customerId": "' + c.encode() + b'", "items": [', "not valid JSON"),
    "missing customerId": (
        lambda c, p: {"items": [{"productId": p, "quantity": 1, "price": 5}], "note": c},
        "customerId",
    ),
    "missing items": (lambda c, p: {"customerId": c}, "items"),
    "empty items": (lambda c, p: {"customerId": c, "items": []}, "items"),
    "zero quantity": (
        lambda c, p: {"customerId": c, "items": [{"productId": p, "quantity": 0, "price": 5}]},
        "quantity",
    ),
    "negative quantity": (
        lambda c, p: {"customerId": c, "items": [{"productId": p, "quantity": -2, "price": 5}]},
        "quantity",
    ),
    "non-numeric price": (
        lambda c, p: {"customerId": c, "items": [{"productId": p, "quantity": 1, "price": "abc"}]},
        "price",
    ),
    "unknown product": (
        lambda c, p: {
            "customerId": c,
            "items": [{"productId": "no-such-product", "quantity": 1, "price": 5}],
        },
        "no-such-product",
    ),
    "1 MB body": (
        lambda c, p: {
            "customerId": c,
            "items": [{"productId": p, "quantity": 1, "price": 5}],
            "padding": "x" * 1_000_000,
        },
        "limit",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_input_is_400_and_leaves_nothing_behind(api, tables, customer_id, make_product, case):
    # GIVEN a malformed request
    build, expected_words = BAD_BODIES[case]
    body = build(customer_id, make_product())
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    # WHEN it is posted, with an idempotency key too
    response = api.post_order(raw, idempotency_key=f"bad-{customer_id}")
    # THEN it is a 400 that says what is wrong
    assert response.status == 400, response.body
    assert expected_words in response.body["message"]
    # AND no order or outbox record was written
    assert records_of_customer(tables, customer_id) == []


def test_the_api_knows_no_faults_field_and_writes_nothing(
    api: OrdersClient, tables, customer_id, make_product
):
    # GIVEN an order that asks for a failing payment in its body, as requests once could
    body = {**body_for(customer_id, make_product()), "faults": {"fail": "payment"}}
    # WHEN it is posted
    response = api.post_order(body)
    # THEN the API refuses it as it refuses any unknown field: faults are not the business's
    assert response.status == 400
    assert response.body["message"].startswith("faults:")
    assert records_of_customer(tables, customer_id) == []


def test_an_order_placed_with_a_key_is_named_after_it(api: OrdersClient, customer_id, make_product):
    # GIVEN a client's own Idempotency-Key
    from sandbox.demo_faults import order_id_for_key

    key = f"key-{uuid.uuid4().hex}"
    # WHEN it places an order with it
    placed = api.place_order(body_for(customer_id, make_product()), key)
    # THEN the order's id is the one the client can compute before asking (fault rules use it)
    assert placed["orderId"] == order_id_for_key(key)


def test_the_catalog_sets_the_price_and_the_charge(api: OrdersClient, tables, customer_id, make_product):
    # GIVEN a product the catalog prices at 2499.00, ordered twice without a price
    product = make_product(stock=5, price="2499.00")
    body = {"customerId": customer_id, "items": [{"productId": product, "quantity": 2}]}
    placed = api.post_order(body)
    # THEN the catalog set the total, and the saga charged exactly that
    assert placed.status == 201, placed.body
    assert placed.body["totalAmount"] == 4998
    order = api.follow_order(placed.body["orderId"], timeout=120)
    assert order["status"] == "COMPLETED"
    assert order["items"] == [{"productId": product, "quantity": 2, "price": 2499}]
    charge = tables["payments"].get_item(Key={"orderId": order["orderId"]}, ConsistentRead=True)["Item"]
    assert charge["amount"] == Decimal("4998.00")


def test_a_tampered_price_is_refused_writes_nothing_and_frees_its_key(
    api: OrdersClient, tables, customer_id, make_product
):
    # GIVEN a client that sends 0.01 for a product the catalog prices at 2499.00
    product = make_product(stock=5, price="2499.00")
    tampered = {"customerId": customer_id, "items": [{"productId": product, "quantity": 1, "price": 0.01}]}
    key = f"k-{uuid.uuid4()}"
    refused = api.post_order(tampered, idempotency_key=key)
    # THEN it is a conflict naming the catalog's price, and no order, outbox record or charge exists
    assert refused.status == 409
    assert refused.body["message"] == f"price of {product} is 2499.00, not 0.01: prices come from the catalog"
    assert records_of_customer(tables, customer_id) == []
    # AND the key was not spent: the corrected request places the order
    corrected = {"customerId": customer_id, "items": [{"productId": product, "quantity": 1, "price": 2499}]}
    placed = api.post_order(corrected, idempotency_key=key)
    assert placed.status == 201, placed.body
    assert placed.body["totalAmount"] == 2499


def test_the_same_money_written_differently_is_the_same_request(api, customer_id, make_product):
    # GIVEN an order sent with price 5, then retried with the same key and price 5.00
    product = make_product()
    key = f"k-{uuid.uuid4()}"
    first = api.post_order(
        {"customerId": customer_id, "items": [{"productId": product, "quantity": 1, "price": 5}]},
        idempotency_key=key,
    )
    retried = api.post_order(
        {"customerId": customer_id, "items": [{"productId": product, "quantity": 1, "price": "5.00"}]},
        idempotency_key=key,
    )
    again = call_api(
        "POST",
        f"{api.api_url}/orders",
        body=b'{"customerId": "'
        + customer_id.encode()
        + b'", "items": [{"productId": "'
        + product.encode()
        + b'", "quantity": 1, "price": 5.00}]}',
        headers={"Idempotency-Key": key},
    )
    # THEN the retry replays the first response (a string price is still refused as such)
    assert first.status == 201
    assert retried.status == 400 and "price must be a number" in retried.body["message"]
    assert again.status == 201 and again.raw == first.raw


@pytest.mark.parametrize(
    ("key", "words"),
    [(" ", "header is empty"), ("k" * 256, "is 256 characters; the limit is 255")],
)
def test_an_empty_or_oversized_key_is_refused_and_writes_nothing(
    api, tables, customer_id, make_product, key, words
):
    product = make_product()
    refused = api.post_order(body_for(customer_id, product), idempotency_key=key)
    assert refused.status == 400
    assert words in refused.body["message"]
    assert records_of_customer(tables, customer_id) == []
