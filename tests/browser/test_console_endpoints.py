"""The console's JSON endpoints: bad input gets a clear 4xx and writes nothing."""

from __future__ import annotations

import json

import pytest

from sandbox.orders import OrdersClient
from tests.browser.conftest import call

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"fail": "warehouse"}, "fail: 'warehouse' is not a step; choose inventory, payment, shipping"),
        ({"flaky": "payment:7"}, "flaky: '7' failing attempts of payment: give 1 to 3"),
        ({"flaky": "billing:1"}, "flaky: 'billing' is not a step"),
        ({"items": "mug"}, "items: 'mug' is not PRODUCT:QUANTITY"),
        ({"items": "mug:1, mug:2"}, "items: mug appears twice"),
        ({"poison": "yes"}, "poison: expected true or false, got 'yes'"),
        ({"colour": "red"}, "unknown field 'colour'"),
        (["fail", "shipping"], "the form must be a JSON object of fields"),
    ],
)
def test_a_malformed_fault_form_is_a_400_that_writes_nothing(
    console_url: str, api: OrdersClient, form: object, message: str
):
    newest = api.list_orders(limit=1)

    status, body = call(console_url + "api/orders", "POST", json.dumps(form).encode())

    assert status == 400
    assert message in body["error"]
    assert api.list_orders(limit=1) == newest


def test_an_order_the_api_refuses_keeps_its_status_and_message(console_url: str, api: OrdersClient):
    newest = api.list_orders(limit=1)

    status, body = call(console_url + "api/orders", "POST", json.dumps({"items": "unicorn:1"}).encode())

    assert status == 400
    assert body["error"] == "the order API refused the order: unknown productId: unicorn"
    assert "espresso-beans" in body["hint"]
    assert api.list_orders(limit=1) == newest


def test_a_body_that_is_not_json_or_not_sent_as_json_is_refused(console_url: str):
    assert call(console_url + "api/orders", "POST", b"fail=shipping")[0] == 400
    status, body = call(console_url + "api/orders", "POST", b"{}", content_type="text/plain")
    assert status == 415 and "application/json" in body["error"]


@pytest.mark.parametrize("path", ["api/orders/{id}", "api/orders/{id}/trace"])
def test_an_unknown_order_is_a_404_naming_it(console_url: str, path: str):
    order_id = "5d1b7c9e-0000-4000-8000-000000000000"

    status, body = call(console_url + path.format(id=order_id))

    assert status == 404
    assert f"order {order_id} not found" in body["error"]


def test_a_malformed_order_id_is_a_400_and_an_unknown_path_a_404(console_url: str):
    status, body = call(console_url + "api/orders/bad%20id%21")
    assert status == 400
    assert body["error"] == "'bad id!' is not an order id"

    status, body = call(console_url + "api/orders/..%2F..%2Fetc%2Fpasswd")
    assert status == 404
    assert body["error"].startswith("the console has no /")


def test_the_status_names_the_local_engine_and_the_console(console_url: str, engine_settings):
    status, body = call(console_url + "api/status")

    assert status == 200
    assert body["engine"]["endpoint"] == f"http://127.0.0.1:{engine_settings.port}"
    assert body["console"]["memoryMiB"] > 0


def test_dead_letters_are_listed_and_a_redrive_must_be_asked_for_as_json(console_url: str):
    status, body = call(console_url + "api/dead-letters")
    assert status == 200 and isinstance(body["deadLetters"], list)

    # A cross-site form post cannot redrive (nor place orders): only the page's script sends JSON.
    assert call(console_url + "api/dead-letters/redrive", "POST", b"", content_type="text/plain")[0] == 415
