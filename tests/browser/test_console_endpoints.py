"""The console's JSON endpoints: bad input gets a clear 4xx and writes nothing."""

from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest
from boto3.dynamodb.types import TypeSerializer

from sandbox.executions import run_execution
from sandbox.faults import FaultSpec, add_faults
from sandbox.orders import OrdersClient
from sandbox.testing import SandboxStack
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


# ---------------------------------------------------------------- any state machine of the stack


def test_the_stack_s_state_machines_are_listed_drawn_and_their_executions_opened(
    console_url: str, sandbox_stack: SandboxStack
):
    stack, settings = sandbox_stack.stack, sandbox_stack.settings
    # GIVEN one execution of the stack's state machine, started directly, its payment step broken
    # by a fault rule for that execution
    order_id = f"console-{uuid.uuid4().hex[:10]}"
    order = {"orderId": order_id, "customerId": "console", "totalAmount": "5.00", "status": "PENDING",
             "items": [{"productId": sandbox_stack.make_product(), "quantity": 1, "price": "5.00"}],
             "createdAt": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    add_faults(
        stack, settings.region, settings.stack_name, [FaultSpec("ChargePayment", "error", execution=order_id)]
    )
    item = {"pk": f"ORDER#{order_id}", "sk": "ORDER", **order}
    sandbox_stack.client("dynamodb").put_item(
        TableName=sandbox_stack.outputs["OrdersTableName"],
        Item={key: TypeSerializer().serialize(value) for key, value in item.items()},
    )
    run = run_execution(stack, settings.region, settings.stack_name, None, {"order": order}, name=order_id)
    # WHEN the console lists the state machines
    status, listed = call(console_url + "api/state-machines")
    assert status == 200 and listed["isDemo"] is True
    (machine,) = listed["stateMachines"]
    assert machine["logicalId"] == "OrderSagaStateMachine"
    # THEN it draws the machine from the engine's definition, by logical id
    status, drawn = call(console_url + "api/state-machines/OrderSagaStateMachine")
    assert status == 200 and 'data-state="ChargePayment"' in drawn["graph"]
    # AND lists its executions with their status
    status, executions = call(console_url + f"api/state-machines/{machine['name']}/executions")
    assert status == 200
    assert {"name": order_id, "status": "FAILED"}.items() <= next(
        e for e in executions["executions"] if e["name"] == order_id
    ).items()
    # AND opens one: its trace, and the graph with the path it took
    status, opened = call(console_url + "api/executions/" + urllib.parse.quote(run.arn, safe=""))
    assert status == 200
    assert opened["trace"]["compensations"] == ["RefundPayment", "ReleaseInventory", "MarkOrderFailed"]
    assert 'data-state="ChargePayment" data-outcome="failed"' in opened["graph"]
    # AND marks the fault the engine injected, with its rule
    (injected,) = opened["trace"]["injectedFaults"]
    assert (injected["state"], injected["kind"], injected["attempt"]) == ("ChargePayment", "error", 1)
    assert 'data-state="ReleaseInventory" data-outcome="compensation"' in opened["graph"]


def test_an_unknown_execution_or_state_machine_is_a_404(console_url: str):
    status, body = call(console_url + "api/executions/never-ran")
    assert status == 404 and "no execution named 'never-ran'" in body["error"]
    status, body = call(console_url + "api/state-machines/Nope")
    assert status == 404 and body["hint"] == "choose one of: OrderSagaStateMachine"
