"""The saga steps' business functions, against a stubbed DynamoDB client or a fake table."""

from __future__ import annotations

import io
import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from inventory.stock import release_stock, reserve_stock
from order_status.transitions import describe_failure, set_order_status
from payment.charges import CHARGE_LIMIT, charge_payment, refund_payment
from shared import steps
from shared.errors import InjectedFailure, InvalidTransitionError, OutOfStockError, PaymentDeclinedError
from shared.steps import Action, handle_step

ORDER = {
    "orderId": "0b4c5a7e-0000-4000-8000-000000000001",
    "customerId": "c-1",
    "items": [{"productId": "espresso-beans", "quantity": 2}, {"productId": "grinder", "quantity": 1}],
    "totalAmount": "178.00",
}


def client_error(code: str, operation: str = "UpdateItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class FakeTable:
    """A DynamoDB Table stand-in that records calls and can fail its writes."""

    def __init__(self, *, write_error: str | None = None, item: dict[str, Any] | None = None):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.write_error = write_error
        self.item = item

    def _write(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, kwargs))
        if self.write_error:
            raise client_error(self.write_error)
        return {}

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._write("put_item", kwargs)

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._write("update_item", kwargs)

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get_item", kwargs))
        return {"Item": self.item} if self.item is not None else {}


# ---------------------------------------------------------------- inventory


@pytest.fixture
def dynamodb(client_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    client = client_factory("dynamodb")
    with Stubber(client) as stubber:
        client.stubber = stubber  # type: ignore[attr-defined]
        yield client
        stubber.assert_no_pending_responses()


def test_reserve_takes_every_item_out_of_stock_in_one_conditional_transaction(dynamodb: Any) -> None:
    # GIVEN the transaction the reservation must send
    expected = {
        "TransactItems": [
            {
                "Update": {
                    "TableName": "inv",
                    "Key": {"productId": {"S": product}},
                    "UpdateExpression": "ADD stock :delta",
                    "ConditionExpression": "attribute_exists(productId) AND stock >= :needed",
                    "ExpressionAttributeValues": {
                        ":delta": {"N": f"-{quantity}"},
                        ":needed": {"N": str(quantity)},
                    },
                }
            }
            for product, quantity in (("espresso-beans", 2), ("grinder", 1))
        ]
    }
    dynamodb.stubber.add_response("transact_write_items", {}, expected)
    # WHEN reserving
    result = reserve_stock(ORDER, dynamodb=dynamodb)
    # THEN it reports the reserved items
    assert result == {
        "status": "RESERVED",
        "items": [
            {"productId": "espresso-beans", "quantity": 2},
            {"productId": "grinder", "quantity": 1},
        ],
    }


def test_reserve_maps_a_cancelled_transaction_to_out_of_stock_naming_the_product(dynamodb: Any) -> None:
    # GIVEN DynamoDB cancels the transaction because the grinder's condition failed
    dynamodb.stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled",
        modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": "ConditionalCheckFailed"}]},
    )
    # WHEN reserving THEN it is a business error naming only the short product
    with pytest.raises(OutOfStockError) as caught:
        reserve_stock(ORDER, dynamodb=dynamodb)
    assert str(caught.value) == "not enough stock for grinder"
    assert isinstance(caught.value.__cause__, ClientError)


def test_reserve_without_cancellation_reasons_still_raises_out_of_stock(dynamodb: Any) -> None:
    dynamodb.stubber.add_client_error(
        "transact_write_items", service_error_code="TransactionCanceledException"
    )
    with pytest.raises(OutOfStockError, match="the ordered items"):
        reserve_stock(ORDER, dynamodb=dynamodb)


def test_reserve_lets_other_dynamodb_errors_through(dynamodb: Any) -> None:
    # GIVEN a throttled request (transient, not a business outcome)
    dynamodb.stubber.add_client_error(
        "transact_write_items", service_error_code="ProvisionedThroughputExceededException"
    )
    with pytest.raises(ClientError) as caught:
        reserve_stock(ORDER, dynamodb=dynamodb)
    assert not isinstance(caught.value, OutOfStockError)


def test_release_puts_the_quantities_back(dynamodb: Any) -> None:
    expected = {
        "TransactItems": [
            {
                "Update": {
                    "TableName": "inv",
                    "Key": {"productId": {"S": product}},
                    "UpdateExpression": "ADD stock :delta",
                    "ConditionExpression": "attribute_exists(productId)",
                    "ExpressionAttributeValues": {":delta": {"N": str(quantity)}},
                }
            }
            for product, quantity in (("espresso-beans", 2), ("grinder", 1))
        ]
    }
    dynamodb.stubber.add_response("transact_write_items", {}, expected)
    assert release_stock(ORDER, dynamodb=dynamodb) == {"status": "RELEASED"}


# ---------------------------------------------------------------- payment


@pytest.mark.parametrize("amount", [CHARGE_LIMIT + Decimal("0.01"), "10000.01", 25000])
def test_charge_over_the_limit_is_declined_without_writing(amount: Any) -> None:
    table = FakeTable()
    with pytest.raises(PaymentDeclinedError, match=r"over the 10000\.00 limit"):
        charge_payment({**ORDER, "totalAmount": amount}, table=table)
    assert table.calls == []


def test_charge_at_the_limit_is_recorded_once() -> None:
    table = FakeTable()
    result = charge_payment({**ORDER, "totalAmount": "10000.00"}, table=table)
    assert result == {"status": "CHARGED", "amount": "10000.00"}
    ((name, kwargs),) = table.calls
    assert name == "put_item"
    assert kwargs["ConditionExpression"] == "attribute_not_exists(orderId)"
    assert kwargs["Item"]["amount"] == Decimal("10000.00")
    assert kwargs["Item"]["orderId"] == ORDER["orderId"]


def test_a_second_charge_returns_the_first_instead_of_charging_twice() -> None:
    table = FakeTable(
        write_error="ConditionalCheckFailedException",
        item={"orderId": ORDER["orderId"], "status": "REFUNDED", "amount": Decimal("178.00")},
    )
    assert charge_payment(ORDER, table=table) == {"status": "REFUNDED", "amount": "178.00"}
    assert [name for name, _ in table.calls] == ["put_item", "get_item"]


def test_refund_of_a_missing_or_refunded_charge_is_a_no_op() -> None:
    assert refund_payment(ORDER, table=FakeTable(write_error="ConditionalCheckFailedException")) == {
        "status": "NOTHING_TO_REFUND"
    }
    with pytest.raises(ClientError):
        refund_payment(ORDER, table=FakeTable(write_error="InternalServerError"))
    table = FakeTable()
    assert refund_payment(ORDER, table=table) == {"status": "REFUNDED"}
    update = table.calls[0][1]
    assert update["ConditionExpression"] == "#status = :source"
    assert update["ExpressionAttributeValues"][":source"] == "CHARGED"
    assert update["ExpressionAttributeValues"][":target"] == "REFUNDED"


# ---------------------------------------------------------------- order status


def test_describe_failure_reads_the_lambda_error_message_from_a_json_cause() -> None:
    cause = json.dumps(
        {"errorMessage": "injected failure in payment", "errorType": "InjectedFailure", "stackTrace": ["..."]}
    )
    assert describe_failure({"Error": "InjectedFailure", "Cause": cause}) == (
        "InjectedFailure: injected failure in payment"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, None),
        ({}, None),
        ({"Error": "States.Timeout"}, "States.Timeout"),
        ({"Error": "States.Timeout", "Cause": ""}, "States.Timeout"),
        ({"Error": "Boom", "Cause": "plain text cause"}, "Boom: plain text cause"),
        ({"Error": "Boom", "Cause": "[1, 2]"}, "Boom: [1, 2]"),
        ({"Error": "Boom", "Cause": "null"}, "Boom: null"),
        ({"Cause": json.dumps({"errorMessage": "no name"})}, "Error: no name"),
    ],
)
def test_describe_failure_edge_cases(error: dict[str, Any] | None, expected: str | None) -> None:
    assert describe_failure(error) == expected


def test_set_failed_records_the_reason_and_only_moves_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    table = FakeTable()
    error = {"Error": "OutOfStockError", "Cause": json.dumps({"errorMessage": "not enough stock for mug"})}
    result = set_order_status({"orderId": "o-1", "status": "FAILED", "error": error}, table=table)
    assert result == {
        "orderId": "o-1",
        "status": "FAILED",
        "changed": True,
        "reason": "OutOfStockError: not enough stock for mug",
    }
    ((_, kwargs),) = table.calls
    assert kwargs["Key"] == {"pk": "ORDER#o-1", "sk": "ORDER"}
    assert kwargs["ConditionExpression"] == "attribute_exists(pk) AND (#status = :from0)"
    assert kwargs["ExpressionAttributeValues"][":from0"] == "PENDING"
    assert kwargs["ExpressionAttributeValues"][":reason"] == "OutOfStockError: not enough stock for mug"
    assert "failureReason = :reason" in kwargs["UpdateExpression"]


def test_set_completed_twice_is_not_a_change() -> None:
    table = FakeTable(write_error="ConditionalCheckFailedException", item={"status": "COMPLETED"})
    result = set_order_status({"orderId": "o-1", "status": "COMPLETED"}, table=table)
    assert result == {"orderId": "o-1", "status": "COMPLETED", "changed": False}
    assert ":reason" not in table.calls[0][1]["ExpressionAttributeValues"]


def test_set_failed_on_a_completed_order_is_refused() -> None:
    table = FakeTable(write_error="ConditionalCheckFailedException", item={"status": "COMPLETED"})
    with pytest.raises(InvalidTransitionError, match="cannot move from COMPLETED to FAILED"):
        set_order_status({"orderId": "o-1", "status": "FAILED"}, table=table)


# ---------------------------------------------------------------- step skeleton


class Context:
    function_name = "fn"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:fn"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


@pytest.fixture
def actions() -> tuple[dict[str, Action], list[dict[str, Any]]]:
    ran: list[dict[str, Any]] = []

    def run(command: dict[str, Any]) -> dict[str, Any]:
        ran.append(command)
        return {"ok": True}

    return {"charge": Action("ChargePayment", run), "refund": Action("RefundPayment", run, True)}, ran


def step_event(action: str, **order: Any) -> dict[str, Any]:
    return {"action": action, "retryCount": 0, "order": {**ORDER, **order}}


def test_handle_step_runs_the_action_with_its_step_name(actions: Any) -> None:
    table, ran = actions
    result = handle_step(
        step_event("charge"), Context(), service="payment", actions=table, logger=Logger(service="test")
    )
    assert result == {"ok": True}
    assert ran[0]["step"] == "ChargePayment"
    assert ran[0]["orderId"] == ORDER["orderId"]


def test_handle_step_checks_faults_on_forward_actions_only(
    actions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULT_INJECTION", "enabled")
    table, ran = actions
    logger = Logger(service="test")
    # GIVEN an order that asks payment to fail
    # WHEN charging THEN the injected failure stops the action before it runs
    with pytest.raises(InjectedFailure):
        handle_step(
            step_event("charge", faults={"fail": "payment"}),
            Context(),
            service="payment",
            actions=table,
            logger=logger,
        )
    assert ran == []
    # AND the compensation of the same order still runs: faults never block compensations
    handle_step(
        step_event("refund", faults={"fail": "payment"}),
        Context(),
        service="payment",
        actions=table,
        logger=logger,
    )
    assert [command["step"] for command in ran] == ["RefundPayment"]


def test_handle_step_refuses_an_unknown_action(actions: Any) -> None:
    table, _ = actions
    with pytest.raises(ValueError, match="unknown payment action 'steal'"):
        handle_step(
            step_event("steal"), Context(), service="payment", actions=table, logger=Logger(service="test")
        )


# ---------------------------------------------------------------- idempotent hits in the logs


def caching_idempotent_function(*, data_keyword_argument: str, **_: Any) -> Any:
    """Stands in for Powertools: a second call with the same order id + step returns the stored result."""
    stored: dict[tuple[str, str], dict[str, Any]] = {}

    def decorate(function: Any) -> Any:
        def run(**kwargs: Any) -> dict[str, Any]:
            command = kwargs[data_keyword_argument]
            key = (command["orderId"], command["step"])
            if key not in stored:
                stored[key] = function(**kwargs)
            return stored[key]

        return run

    return decorate


def test_a_step_served_from_its_idempotency_record_is_logged_as_a_hit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(steps, "idempotent_function", caching_idempotent_function)
    monkeypatch.setattr(steps, "idempotency_store", lambda: None)
    ran: list[dict[str, Any]] = []
    charge = steps.idempotent_step(lambda command: ran.append(command) or {"status": "CHARGED"})
    output = io.StringIO()
    logger = Logger(service="test-hits", logger_handler=logging.StreamHandler(output))
    event = step_event("charge")
    # WHEN the same step of the same order is called twice
    for _ in range(2):
        steps.handle_step(
            event,
            Context(),
            service="payment",
            actions={"charge": Action("ChargePayment", charge)},
            logger=logger,
        )
    # THEN it ran once, and the second call is logged as an idempotent hit
    assert len(ran) == 1
    logged = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [line["idempotent_hit"] for line in logged] == [False, True]
    assert all(line["correlation_id"] == ORDER["orderId"] for line in logged)


def test_a_failing_step_logs_its_error_with_the_order(actions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_INJECTION", "enabled")
    table, _ = actions
    output = io.StringIO()
    logger = Logger(service="test-failures", logger_handler=logging.StreamHandler(output))
    with pytest.raises(InjectedFailure):
        handle_step(
            step_event("charge", faults={"fail": "payment"}), Context(), service="payment", actions=table,
            logger=logger,
        )  # fmt: skip
    line = json.loads(output.getvalue())
    assert (line["level"], line["message"], line["error_type"]) == (
        "ERROR",
        "ChargePayment failed",
        "InjectedFailure",
    )
    assert line["correlation_id"] == ORDER["orderId"]
