"""`sandbox order` flags: --item, --fail and --flaky become an order payload and its expected end."""

from __future__ import annotations

import json

import pytest

from cli import order_options
from cli.order_options import parse_faults, parse_item
from order_api.models import RequestError, parse_order_request
from sandbox import orders
from sandbox.catalog import DEMO_PRODUCTS
from sandbox.demo_faults import STEP_STATES, order_fault_specs
from sandbox.errors import UsageError
from sandbox.runs import OrderRequest

# ---------------------------------------------------------------- --item


@pytest.mark.parametrize("product", ["espresso-beans", "mug", "teapot"])
def test_an_item_without_a_price_leaves_the_price_to_the_catalog(product: str) -> None:
    # The API prices the line (and refuses a product the catalog does not know)
    assert parse_item(f"{product}:3") == {"productId": product, "quantity": 3}


def test_an_explicit_price_is_sent_for_the_api_to_check() -> None:
    assert parse_item("mug:2:9.99") == {"productId": "mug", "quantity": 2, "price": 9.99}
    assert parse_item("teapot:1:35") == {"productId": "teapot", "quantity": 1, "price": 35.0}


@pytest.mark.parametrize("text", ["mug:two", "mug:1.5", "mug:"])
def test_a_quantity_that_is_not_a_whole_number_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="is not a whole number"):
        parse_item(text)


@pytest.mark.parametrize("text", ["mug", ":1", "mug:1:2:3", ""])
def test_a_malformed_item_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="expected PRODUCT:QTY or PRODUCT:QTY:PRICE"):
        parse_item(text)


@pytest.mark.parametrize("text", ["mug:1:abc", "mug:1:"])
def test_a_price_that_is_not_a_number_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="is not a number"):
        parse_item(text)


def test_parsed_default_items_make_a_valid_order_priced_by_the_demo_catalog() -> None:
    items = [parse_item(text) for text in ("espresso-beans:1", "mug:2")]
    request = parse_order_request(json.dumps({"customerId": "demo-customer", "items": items}))
    catalog = {product: entry["price"] for product, entry in DEMO_PRODUCTS.items()}
    assert str(request.priced(catalog).total_amount) == "48.50"


@pytest.mark.parametrize("text", ["mug:1:nan", "mug:1:inf", "mug:1:-5", "mug:0"])
def test_values_the_cli_lets_through_are_still_refused_by_the_api(text: str) -> None:
    # GIVEN an item the CLI does not check further (the API is the one authority)
    body = json.dumps({"customerId": "c", "items": [parse_item(text)]})
    # THEN the API refuses it with a message naming the field
    with pytest.raises(RequestError, match=r"^items\.0\.(price|quantity):"):
        parse_order_request(body)


# ---------------------------------------------------------------- --fail / --flaky


def test_no_fault_flags_means_no_faults() -> None:
    assert parse_faults(None, []) is None
    assert parse_faults("", []) is None


@pytest.mark.parametrize("step", ["inventory", "payment", "shipping"])
def test_fail_names_a_saga_step(step: str) -> None:
    assert parse_faults(step, []) == {"fail": step}


def test_flaky_defaults_to_two_attempts_and_accepts_an_explicit_count() -> None:
    assert parse_faults(None, ["shipping"]) == {"flaky": {"shipping": 2}}
    assert parse_faults(None, ["payment:3", "inventory:1"]) == {"flaky": {"payment": 3, "inventory": 1}}
    assert parse_faults("payment", ["shipping:1"]) == {"fail": "payment", "flaky": {"shipping": 1}}


def test_every_step_the_flags_name_has_a_state_to_break() -> None:
    assert order_options.DEFAULT_FLAKY_ATTEMPTS == 2
    assert tuple(STEP_STATES) == orders.SAGA_STEPS


@pytest.mark.parametrize("fail", ["bogus", "Payment", "notifications"])
def test_fail_with_an_unknown_step_is_a_usage_error_naming_the_steps(fail: str) -> None:
    with pytest.raises(UsageError, match="choose one of inventory, payment, shipping"):
        parse_faults(fail, [])


@pytest.mark.parametrize("spec", ["bogus", "bogus:1", ":2"])
def test_flaky_with_an_unknown_step_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError, match="choose one of inventory, payment, shipping"):
        parse_faults(None, [spec])


def test_flaky_with_a_bad_count_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'x' is not a whole number"):
        parse_faults(None, ["payment:x"])


@pytest.mark.parametrize(
    ("fail", "flaky"), [("payment", []), (None, ["shipping"]), ("inventory", ["payment:3"])]
)
def test_parsed_faults_become_rules_scoped_to_the_order(fail: str | None, flaky: list[str]) -> None:
    # GIVEN the flags parsed WHEN they become the order's rules
    specs = order_fault_specs(parse_faults(fail, flaky), "o-1")
    # THEN there is one rule per failing step, each scoped to the order's execution
    assert len(specs) == (1 if fail else 0) + len(flaky)
    assert {spec.execution for spec in specs} == {"o-1"}


def test_faults_are_not_part_of_the_order_the_api_is_sent() -> None:
    # GIVEN an order with every kind of fault
    request = OrderRequest(faults={"fail": "payment", "flaky": {"shipping": 1}, "poison": True})
    # THEN its body is the business request alone, which the API accepts as such
    assert set(request.payload) == {"customerId", "items"}
    parse_order_request(json.dumps(request.payload))


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (None, "COMPLETED"),
        ({}, "COMPLETED"),
        ({"flaky": {"payment": 3}}, "COMPLETED"),
        ({"fail": "shipping"}, "FAILED"),
        ({"fail": "inventory", "flaky": {"payment": 1}}, "FAILED"),
        ({"timeout": "payment"}, "COMPLETED"),
        ({"hang": "payment"}, "FAILED"),
    ],
)
def test_expected_status(faults: dict | None, expected: str) -> None:
    assert OrderRequest(faults=faults).expected_status == expected


def test_infrastructure_fault_flags() -> None:
    faults = parse_faults(
        None, [], timeout="payment", hang="shipping", crash="publisher", is_duplicate_delivery=True,
        is_poison=True,
    )  # fmt: skip
    assert faults == {"timeout": "payment", "hang": "shipping", "crash": "publisher", "duplicateDelivery": True,
                      "poison": True}  # fmt: skip
    # AND each becomes a rule of its own
    assert [spec.kind for spec in order_fault_specs(faults, "o-1")] == [
        "timeout", "timeout", "duplicate-delivery", "crash", "poison",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"timeout": "billing"}, "--timeout"), ({"hang": "billing"}, "--hang"), ({"crash": "saga"}, "--crash")],
)
def test_bad_infrastructure_fault_flags(kwargs: dict, words: str) -> None:

    with pytest.raises(UsageError, match=words):
        parse_faults(None, [], **kwargs)
