"""`sandbox trace` and `sandbox logs` on the session engine, for orders placed through the real API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.orders import OrdersClient
from sandbox.runs import OrderRequest, run_order
from sandbox.saga import execution_arn
from sandbox.settings import Settings
from sandbox.stack import LocalStack, physical_id
from sandbox.trace import Trace, peek_messages, trace_order
from sandbox.waiting import wait_until
from tests.processes import run_sandbox, started_sandbox, wait_for_exit, wait_for_output

pytestmark = pytest.mark.integration


def order_body(customer_id: str, product_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "customerId": customer_id,
        "items": [{"productId": product_id, "quantity": 1, "price": 5.0}],
        **extra,
    }


@pytest.fixture(scope="module")
def run_cli(engine_settings: Settings, stack: LocalStack) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the `sandbox` console script against the session engine."""
    env = {
        **os.environ,
        "SANDBOX_PORT": str(engine_settings.port),
        "SANDBOX_STATE_DIR": str(engine_settings.state_dir),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_sandbox(*args, env=env)

    run.env = env  # type: ignore[attr-defined]
    run.stack = stack  # type: ignore[attr-defined]
    return run


def finished_trace(stack: LocalStack, settings: Settings, order_id: str, notification: str) -> Trace:
    """The order's trace once the saga ended and its notification was handled."""

    def is_complete() -> Trace | None:
        trace = trace_order(stack, settings, order_id)
        kinds = {(entry.kind, entry.name) for entry in trace.entries}
        return trace if ("notification", notification) in kinds and trace.saga_status != "RUNNING" else None

    return wait_until(is_complete, timeout=60, what=f"the {notification} notification of order {order_id}")


@pytest.fixture(scope="module")
def failed_shipping(api: OrdersClient, stack: LocalStack, engine_settings: Settings, tables: Any) -> Trace:
    """A --fail shipping order, placed through the API as `sandbox order` places it, traced once it is over."""
    product = f"test-{uuid.uuid4().hex[:12]}"
    tables["inventory"].put_item(Item={"productId": product, "name": product, "price": 5, "stock": 10})
    request = OrderRequest(
        customer_id=f"cust-{uuid.uuid4().hex[:8]}",
        items=({"productId": product, "quantity": 1},),
        faults={"fail": "shipping"},
    )
    run = run_order(api, request, local=(stack, engine_settings.region), wait_seconds=60)
    return finished_trace(stack, engine_settings, run.order_id, "OrderFailed")


def position(trace: Trace, kind: str, name: str, status: str | None = None) -> int:
    """Where the first entry of this kind, name (and status) is in the timeline."""
    for index, entry in enumerate(trace.entries):
        if entry.kind == kind and entry.name == name and (status is None or entry.status == status):
            return index
    raise AssertionError(f"no {kind} {name} {status or ''} in {[(e.kind, e.name) for e in trace.entries]}")


def test_a_failed_shipping_order_is_traced_in_causal_order(failed_shipping: Trace):
    trace = failed_shipping
    # THEN the timeline runs from the request to the notification, in this order
    steps = [
        position(trace, "request", "POST /orders"),
        position(trace, "transaction", "TransactWriteItems"),
        position(trace, "delivery", "delivery 1 of 1", "SUCCEEDED"),
        position(trace, "event", "OrderPlaced"),
        position(trace, "state", "ReserveInventory", "SUCCEEDED"),
        position(trace, "state", "ChargePayment", "SUCCEEDED"),
        position(trace, "state", "CreateShipment", "FAILED"),
        position(trace, "catch", "CreateShipment"),
        position(trace, "compensation", "CancelShipment", "SUCCEEDED"),
        position(trace, "compensation", "RefundPayment", "SUCCEEDED"),
        position(trace, "compensation", "ReleaseInventory", "SUCCEEDED"),
        position(trace, "state", "MarkOrderFailed", "SUCCEEDED"),
        position(trace, "event", "OrderFailed"),
        position(trace, "notification", "OrderFailed", "SENT"),
    ]
    assert steps == sorted(steps)
    # AND in time order, with durations where something took time
    assert [entry.at for entry in trace.entries] == sorted(entry.at for entry in trace.entries)
    assert all(
        entry.duration_ms is not None and entry.duration_ms >= 0
        for entry in trace.entries
        if entry.kind in ("request", "delivery", "state", "compensation", "notification")
    )
    # AND the failure, the rules that matched and the final status are there
    failed = trace.entries[position(trace, "state", "CreateShipment")]
    assert "InjectedFault: injected failure in shipping" in failed.detail
    outcome = trace.entries[position(trace, "event", "OrderFailed")]
    assert "AuditRule" in outcome.detail and "notifications function" in outcome.detail
    assert (trace.status, trace.saga_status) == ("FAILED", "FAILED")
    assert trace.failure_reason == "InjectedFault: injected failure in shipping"
    assert trace.notes == []


def test_the_cli_prints_the_trace_ending_with_the_final_status(failed_shipping: Trace, run_cli: Any):
    result = run_cli("trace", failed_shipping.order_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"trace of order {failed_shipping.order_id}")
    assert any("↩ RefundPayment" in line for line in lines)
    assert [line for line in lines if line.startswith("order ")][-1] == (
        "order FAILED — InjectedFault: injected failure in shipping"
    )


def test_json_is_the_same_timeline_for_scripts(failed_shipping: Trace, run_cli: Any):
    result = run_cli("trace", failed_shipping.order_id, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["orderId"] == failed_shipping.order_id
    assert document["status"] == "FAILED"
    assert [(entry["kind"], entry["name"]) for entry in document["entries"]] == [
        (entry.kind, entry.name) for entry in failed_shipping.entries
    ]
    assert {"at", "source", "kind", "name", "detail"} <= set(document["entries"][0])


def test_mermaid_is_a_sequence_diagram_to_paste(failed_shipping: Trace, run_cli: Any):
    result = run_cli("trace", failed_shipping.order_id, "--mermaid")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sequenceDiagram\n")
    assert "Saga->>Payment: RefundPayment (compensation)" in result.stdout
    assert "Shipping--xSaga: FAILED" in result.stdout


def test_logs_of_one_function_for_one_order(failed_shipping: Trace, run_cli: Any):
    # WHEN asking for the payment function's lines of the order
    result = run_cli("logs", "payment", "--order", failed_shipping.order_id, "--json")
    assert result.returncode == 0, result.stderr
    lines = json.loads(result.stdout)["lines"]
    # THEN only payment lines of that order's requests: its charge and its refund
    assert {line["function"] for line in lines} == {"payment"}
    structured = [line for line in lines if line["fields"]]
    assert [line["message"] for line in structured] == ["ChargePayment done", "RefundPayment done"]
    assert {line["fields"]["correlation_id"] for line in structured} == {failed_shipping.order_id}
    assert len({line["requestId"] for line in lines}) == 2
    # AND people get the same lines, one per line
    text = run_cli("logs", "payment", "--order", failed_shipping.order_id)
    assert text.returncode == 0, text.stderr
    assert len(text.stdout.splitlines()) == len(lines)
    assert "ChargePayment done" in text.stdout


def test_logs_take_a_logical_id_a_function_name_or_a_short_name(
    failed_shipping: Trace, run_cli: Any, stack: LocalStack, engine_settings: Settings
):
    # GIVEN the payment function, named three ways
    physical = physical_id(stack, engine_settings.region, engine_settings.stack_name, "PaymentFunction")
    seen = []
    for name in ("PaymentFunction", physical, "payment"):
        # WHEN its lines of the order are asked for
        result = run_cli("logs", name, "--order", failed_shipping.order_id, "--json")
        assert result.returncode == 0, result.stderr
        seen.append(json.loads(result.stdout)["lines"])
    # THEN each name gives the same lines: the charge and the refund
    assert seen[0] == seen[1] == seen[2]
    assert [line["message"] for line in seen[0] if line["fields"]] == [
        "ChargePayment done",
        "RefundPayment done",
    ]


def test_the_order_s_saga_execution_is_traced_as_an_execution_by_its_arn(
    failed_shipping: Trace, run_cli: Any
):
    # GIVEN the execution the outbox publisher started for the order (named after it)
    execution = execution_arn(run_cli.stack.outputs["StateMachineArn"], failed_shipping.order_id)
    # WHEN it is traced by its ARN
    result = run_cli("trace", execution, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    # THEN it is the execution's trace: the failure, the Catch, the compensations and each task's lines
    assert document["name"] == failed_shipping.order_id and document["status"] == "FAILED"
    assert document["catches"] == [
        {
            "state": "CreateShipment",
            "error": "InjectedFault",
            "matched": "States.ALL",
            "next": "CancelShipment",
        }
    ]
    # (the failed step is undone too: its failure was not a business error, so it may have landed)
    assert document["compensations"] == [
        "CancelShipment",
        "RefundPayment",
        "ReleaseInventory",
        "MarkOrderFailed",
    ]
    # AND the one attempt the demo's rule broke is marked as injected
    assert [(fault["state"], fault["kind"], fault["attempt"]) for fault in document["injectedFaults"]] == [
        ("CreateShipment", "error", 1)
    ]
    charge = next(state for state in document["states"] if state["name"] == "ChargePayment")
    assert any(line["message"] == "ChargePayment done" for line in charge["attempts"][0]["logLines"])
    # AND the order id itself still gives the order's whole timeline
    order = run_cli("trace", failed_shipping.order_id, "--json")
    assert json.loads(order.stdout)["orderId"] == failed_shipping.order_id


def test_an_idempotent_replay_appears_as_a_replay(
    api: OrdersClient, stack: LocalStack, engine_settings: Settings, customer_id: str, make_product: Any
):
    # GIVEN an order placed twice with the same Idempotency-Key
    body = order_body(customer_id, make_product())
    key = f"trace-{uuid.uuid4().hex[:8]}"
    first = api.post_order(body, key)
    again = api.post_order(body, key)
    assert (first.status, again.raw) == (201, first.raw)
    order_id = first.body["orderId"]
    api.follow_order(order_id, timeout=60)
    # WHEN it is traced
    trace = finished_trace(stack, engine_settings, order_id, "OrderCompleted")
    # THEN the request placed it, the replay wrote nothing, and there is one saga
    placed = trace.entries[position(trace, "request", "POST /orders")]
    replay = trace.entries[position(trace, "replay", "POST /orders")]
    assert f"Idempotency-Key {key}" in placed.detail
    assert "nothing written" in replay.detail and replay.at > placed.at
    assert [entry.kind for entry in trace.entries].count("transaction") == 1
    assert [entry.kind for entry in trace.entries].count("execution") == 1
    assert trace.status == "COMPLETED"


def test_tracing_leaves_the_audit_queue_as_it_was(
    failed_shipping: Trace, stack: LocalStack, engine_settings: Settings
):
    sqs = stack.client("sqs", engine_settings.region)
    queue = stack.outputs["AuditQueueUrl"]
    before = {message.event["id"] for message in peek_messages(sqs, queue)}
    trace_order(stack, engine_settings, failed_shipping.order_id)
    after = peek_messages(sqs, queue)
    assert {message.event["id"] for message in after} >= before
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_an_unknown_order_is_one_clear_line(run_cli: Any):
    result = run_cli("trace", "no-such-order")
    assert result.returncode == 1
    assert "order no-such-order not found" in result.stderr
    assert "sandbox orders" in result.stderr
    assert "Traceback" not in result.stderr


def test_order_ends_with_its_trace_command(run_cli: Any):
    result = run_cli("order", "--item", "mug:1")
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("trace: sandbox trace ")
    data = json.loads(run_cli("order", "--item", "mug:1", "--json").stdout)
    assert data["traceCommand"] == f"sandbox trace {data['orderId']}"


def test_logs_follow_prints_new_lines_until_interrupted(
    run_cli: Any, api: OrdersClient, customer_id: str, make_product: Any, tmp_path: Path
):
    # GIVEN `sandbox logs payment --follow` running, its follow loop started
    output = tmp_path / "follow.out"
    with started_sandbox("logs", "payment", "--follow", "--json", env=run_cli.env, output=output) as follower:
        wait_for_output(follower, output, "Ctrl-C to stop", timeout=60, what="the follow loop to start")
        # WHEN an order is placed
        placed = api.place_order(order_body(customer_id, make_product()))
        wait_for_output(
            follower, output, placed["orderId"], timeout=90, what="the order's payment lines to be followed"
        )
        # AND Ctrl-C is pressed
        follower.send_signal(signal.SIGINT)
        # THEN it stops following (the signal was handled) and exits 0
        wait_for_output(
            follower, output, "stopped following", timeout=30, what="the follower to stop on Ctrl-C"
        )
        code = wait_for_exit(
            follower, output, timeout=60, what="`sandbox logs --follow` to exit after stopping"
        )
    assert code == 0, output.read_text()
    lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
    assert any(line["message"] == "ChargePayment done" for line in lines)
    assert {line["function"] for line in lines} == {"payment"}


def test_logs_since_and_unknown_functions(run_cli: Any):
    recent = run_cli("logs", "order-api", "--since", "30m", "--json")
    assert recent.returncode == 0, recent.stderr
    assert {line["function"] for line in json.loads(recent.stdout)["lines"]} <= {"order-api"}
    everything = run_cli("logs", "order-api", "--since", "30m", "--all-requests", "--json")
    quiet = [line for line in json.loads(everything.stdout)["lines"] if not line["fields"]]
    assert len(quiet) > len([line for line in json.loads(recent.stdout)["lines"] if not line["fields"]])
    unknown = run_cli("logs", "billing")
    assert unknown.returncode == 1
    assert "the stack has no function 'billing'" in unknown.stderr
    assert (
        "OrderApiFunction (order-api), OutboxPublisherFunction (outbox-publisher), InventoryFunction (inventory), "
        "PaymentFunction (payment)" in " ".join(unknown.stderr.split())
    )
    bad = run_cli("logs", "--since", "5 minutes")
    assert bad.returncode == 1 and "30s, 5m, 1h or 2d" in bad.stderr
