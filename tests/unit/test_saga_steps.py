"""The saga steps' business functions, against a stubbed DynamoDB client or a fake table."""

from __future__ import annotations

import io
import itertools
import json
import logging
import time
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from inventory.stock import release_stock, reserve_stock
from order_status.transitions import describe_failure, set_order_status
from payment.charges import CHARGE_LIMIT, charge_payment, refund_payment
from shared import steps
from shared.errors import (
    InvalidTransitionError,
    OutOfStockError,
    PaymentDeclinedError,
    StepAlreadyCompensatedError,
    TransientStepError,
)
from shared.steps import Action, handle_step
from shipping.shipments import cancel_shipment, create_shipment
from tests.unit.memory_idempotency import MemoryPersistenceLayer

SERIALIZER = TypeSerializer()

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

    def __init__(
        self,
        *,
        write_error: str | None = None,
        item: dict[str, Any] | None = None,
        is_item_in_error: bool = False,
    ):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.write_error = write_error
        self.item = item
        self.is_item_in_error = is_item_in_error  # the failed write carries ``item`` (ALL_OLD)

    def _write(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, kwargs))
        if self.write_error:
            error = client_error(self.write_error)
            if self.is_item_in_error and self.item is not None:
                serialized = {key: SERIALIZER.serialize(value) for key, value in self.item.items()}
                error.response["Item"] = serialized  # type: ignore[typeddict-unknown-key]
            raise error
        return {}

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._write("put_item", kwargs)

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._write("update_item", kwargs)

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get_item", kwargs))
        return {"Item": self.item} if self.item is not None else {}


class MemoryTable:
    """A one-key DynamoDB Table in memory, with the conditions the step records use.

    A failed condition carries the stored item when asked (ReturnValuesOnConditionCheckFailure),
    as DynamoDB's error does, in its wire format; ``reads`` counts GetItem calls.
    """

    def __init__(self, key_name: str = "orderId", *, returns_old: bool = True):
        self.key_name = key_name
        self.items: dict[str, dict[str, Any]] = {}
        self.returns_old = returns_old  # False: an engine whose errors never carry the item
        self.reads = 0

    def _condition_failed(
        self, stored: dict[str, Any] | None, asked: str | None, operation: str
    ) -> ClientError:
        error = client_error("ConditionalCheckFailedException", operation)
        if stored is not None and asked == "ALL_OLD" and self.returns_old:
            error.response["Item"] = {key: SERIALIZER.serialize(value) for key, value in stored.items()}  # type: ignore[typeddict-unknown-key]
        return error

    def put_item(
        self,
        *,
        Item: dict[str, Any],
        ConditionExpression: str,
        ReturnValuesOnConditionCheckFailure: str | None = None,
    ) -> None:
        assert ConditionExpression == f"attribute_not_exists({self.key_name})"
        stored = self.items.get(Item[self.key_name])
        if stored is not None:
            raise self._condition_failed(stored, ReturnValuesOnConditionCheckFailure, "PutItem")
        self.items[Item[self.key_name]] = dict(Item)

    def update_item(self, *, Key: dict[str, Any], ConditionExpression: str, **kwargs: Any) -> None:
        assert ConditionExpression == "#status = :source"
        values = kwargs["ExpressionAttributeValues"]
        stored = self.items.get(Key[self.key_name])
        if stored is None or stored["status"] != values[":source"]:
            raise self._condition_failed(
                stored, kwargs.get("ReturnValuesOnConditionCheckFailure"), "UpdateItem"
            )
        stored["status"] = values[":target"]

    def get_item(self, *, Key: dict[str, Any], ConsistentRead: bool) -> dict[str, Any]:
        self.reads += 1
        stored = self.items.get(Key[self.key_name])
        return {"Item": dict(stored)} if stored else {}


# ---------------------------------------------------------------- inventory


@pytest.fixture
def dynamodb(client_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    monkeypatch.setenv("RESERVATIONS_TABLE", "reservations")
    client = client_factory("dynamodb")
    with Stubber(client) as stubber:
        client.stubber = stubber  # type: ignore[attr-defined]
        yield client
        stubber.assert_no_pending_responses()


def stock_update(product: str, delta: int) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": "inv",
        "Key": {"productId": {"S": product}},
        "UpdateExpression": "ADD stock :delta",
        "ExpressionAttributeValues": {":delta": {"N": str(delta)}},
    }
    if delta < 0:
        update["ConditionExpression"] = "attribute_exists(productId) AND stock >= :needed"
        update["ExpressionAttributeValues"][":needed"] = {"N": str(-delta)}
    else:
        update["ConditionExpression"] = "attribute_exists(productId)"
    return {"Update": update}


ORDER_KEY = {"orderId": {"S": ORDER["orderId"]}}
RESERVED_ITEMS = [{"productId": "espresso-beans", "quantity": 2}, {"productId": "grinder", "quantity": 1}]


def reservation_item(status: str) -> dict[str, Any]:
    entries = [
        {"M": {"productId": {"S": i["productId"]}, "quantity": {"N": str(i["quantity"])}}}
        for i in RESERVED_ITEMS
    ]
    return {**ORDER_KEY, "status": {"S": status}, "items": {"L": entries}}


def expect_reservation_read(dynamodb: Any, status: str | None) -> None:
    response = {"Item": reservation_item(status)} if status else {}
    expected = {"TableName": "reservations", "Key": ORDER_KEY, "ConsistentRead": True}
    dynamodb.stubber.add_response("get_item", response, expected)


def cancel_transaction(
    dynamodb: Any, reasons: list[str] | None, stored: dict[str, Any] | None = None
) -> None:
    """The transaction cancelled for ``reasons``; ``stored`` rides on the last (the reservation's)."""
    entries: list[dict[str, Any]] = [{"Code": code} for code in reasons or []]
    if stored is not None:
        entries[-1]["Item"] = stored
    fields = {"CancellationReasons": entries} if reasons else {}
    dynamodb.stubber.add_client_error(
        "transact_write_items", service_error_code="TransactionCanceledException", modeled_fields=fields
    )


def test_reserve_takes_the_stock_and_records_the_reservation_in_one_transaction(dynamodb: Any) -> None:
    # GIVEN the transaction the reservation must send: every item conditionally, plus the
    # order's reservation record, written only if none exists (not even a tombstone)
    expected = {
        "TransactItems": [
            stock_update("espresso-beans", -2),
            stock_update("grinder", -1),
            {
                "Put": {
                    "TableName": "reservations",
                    "Item": {**reservation_item("RESERVED"), "reservedAt": {"S": ANY}},
                    "ConditionExpression": "attribute_not_exists(orderId)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
    }
    dynamodb.stubber.add_response("transact_write_items", {}, expected)
    # WHEN reserving
    result = reserve_stock(ORDER, dynamodb=dynamodb)
    # THEN it reports the reserved items
    assert result == {"status": "RESERVED", "items": RESERVED_ITEMS}


def test_reserve_maps_a_cancelled_transaction_to_out_of_stock_naming_the_product(dynamodb: Any) -> None:
    # GIVEN DynamoDB cancels the transaction because the grinder's condition failed, and the
    # reservation's own condition held (the order has none): no read follows
    cancel_transaction(dynamodb, ["None", "ConditionalCheckFailed", "None"])
    # WHEN reserving THEN it is a business error naming only the short product
    with pytest.raises(OutOfStockError) as caught:
        reserve_stock(ORDER, dynamodb=dynamodb)
    assert str(caught.value) == "not enough stock for grinder"
    assert isinstance(caught.value.__cause__, ClientError)


def test_reserve_without_cancellation_reasons_still_raises_out_of_stock(dynamodb: Any) -> None:
    cancel_transaction(dynamodb, None)
    expect_reservation_read(dynamodb, None)
    with pytest.raises(OutOfStockError, match="the ordered items"):
        reserve_stock(ORDER, dynamodb=dynamodb)


def test_reserve_finding_its_own_reservation_returns_it_without_taking_stock_again(dynamodb: Any) -> None:
    # GIVEN an earlier run of this step reserved the order (its idempotency record has gone)
    cancel_transaction(dynamodb, ["None", "None", "ConditionalCheckFailed"])
    expect_reservation_read(dynamodb, "RESERVED")
    # WHEN reserving again THEN the first reservation is the result
    assert reserve_stock(ORDER, dynamodb=dynamodb) == {"status": "RESERVED", "items": RESERVED_ITEMS}


@pytest.mark.parametrize("status", ["RESERVED", "VOID", "RELEASED"])
def test_a_cancelled_reserve_takes_the_stored_reservation_from_the_cancellation_not_a_read(
    dynamodb: Any, status: str
) -> None:
    # GIVEN the reservation's condition failed and the cancellation carries the stored record
    cancel_transaction(dynamodb, ["None", "None", "ConditionalCheckFailed"], reservation_item(status))
    # WHEN reserving THEN the outcome follows that record, with no GetItem (the stubber has none)
    if status == "RESERVED":
        assert reserve_stock(ORDER, dynamodb=dynamodb) == {"status": "RESERVED", "items": RESERVED_ITEMS}
    else:
        with pytest.raises(StepAlreadyCompensatedError, match=f"already {status}"):
            reserve_stock(ORDER, dynamodb=dynamodb)


@pytest.mark.parametrize("status", ["VOID", "RELEASED"])
def test_a_late_reserve_after_its_release_takes_nothing(dynamodb: Any, status: str) -> None:
    # GIVEN the saga gave up on the reservation and released it (or voided it, nothing reserved)
    cancel_transaction(dynamodb, ["None", "None", "ConditionalCheckFailed"])
    expect_reservation_read(dynamodb, status)
    # WHEN the timed-out reserve arrives late THEN it fails without taking stock
    with pytest.raises(StepAlreadyCompensatedError, match=f"already {status}"):
        reserve_stock(ORDER, dynamodb=dynamodb)


def test_reserve_lets_other_dynamodb_errors_through(dynamodb: Any) -> None:
    # GIVEN a throttled request (transient, not a business outcome)
    dynamodb.stubber.add_client_error(
        "transact_write_items", service_error_code="ProvisionedThroughputExceededException"
    )
    with pytest.raises(ClientError) as caught:
        reserve_stock(ORDER, dynamodb=dynamodb)
    assert not isinstance(caught.value, OutOfStockError)


def test_release_puts_back_what_the_reservation_holds_and_marks_it_released(dynamodb: Any) -> None:
    # GIVEN a reservation (the command's items are ignored: the record is the source of truth)
    expect_reservation_read(dynamodb, "RESERVED")
    mark_released = {
        "Update": {
            "TableName": "reservations",
            "Key": ORDER_KEY,
            "UpdateExpression": "SET #status = :released, releasedAt = :now",
            "ConditionExpression": "#status = :reserved",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":released": {"S": "RELEASED"},
                ":reserved": {"S": "RESERVED"},
                ":now": {"S": ANY},
            },
        }
    }
    expected = {
        "TransactItems": [mark_released, stock_update("espresso-beans", 2), stock_update("grinder", 1)]
    }
    dynamodb.stubber.add_response("transact_write_items", {}, expected)
    # WHEN releasing THEN the quantities go back in the same transaction that marks it released
    result = release_stock({**ORDER, "items": []}, dynamodb=dynamodb)
    assert result == {"status": "RELEASED", "items": RESERVED_ITEMS}


def test_release_with_nothing_reserved_leaves_a_tombstone(dynamodb: Any) -> None:
    # GIVEN no reservation (the reserve timed out and has not landed, or never will)
    expect_reservation_read(dynamodb, None)
    expected = {
        "TableName": "reservations",
        "Item": {**ORDER_KEY, "status": {"S": "VOID"}, "voidedAt": {"S": ANY}},
        "ConditionExpression": "attribute_not_exists(orderId)",
    }
    dynamodb.stubber.add_response("put_item", {}, expected)
    # WHEN releasing THEN no stock moves, and the VOID record stops a late reserve
    assert release_stock(ORDER, dynamodb=dynamodb) == {"status": "NOTHING_TO_RELEASE"}


def test_release_racing_a_late_reserve_releases_what_landed(dynamodb: Any) -> None:
    # GIVEN the late reserve lands between the release's read and its tombstone
    expect_reservation_read(dynamodb, None)
    dynamodb.stubber.add_client_error("put_item", service_error_code="ConditionalCheckFailedException")
    expect_reservation_read(dynamodb, "RESERVED")
    dynamodb.stubber.add_response("transact_write_items", {})
    # WHEN releasing THEN the next round sees the reservation and puts its stock back
    assert release_stock(ORDER, dynamodb=dynamodb)["status"] == "RELEASED"


@pytest.mark.parametrize("status", ["RELEASED", "VOID"])
def test_release_twice_changes_nothing(dynamodb: Any, status: str) -> None:
    expect_reservation_read(dynamodb, status)
    assert release_stock(ORDER, dynamodb=dynamodb) == {"status": "NOTHING_TO_RELEASE"}


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
    table = MemoryTable()
    first = charge_payment(ORDER, table=table)
    # WHEN the same order is charged again (a replay whose idempotency record expired)
    again = charge_payment(ORDER, table=table)
    # THEN the stored charge is the answer and one charge exists
    assert first == again == {"status": "CHARGED", "amount": "178.00"}
    assert len(table.items) == 1


@pytest.mark.parametrize("returns_old", [True, False], ids=["item-in-error", "engine-without-it"])
def test_replayed_steps_and_compensations_read_the_stored_record_from_the_failed_write(
    returns_old: bool,
) -> None:
    # GIVEN a charge, then its refund (an engine's failed condition carries the stored item, or not)
    table = MemoryTable(returns_old=returns_old)
    charge_payment(ORDER, table=table)
    refund_payment(ORDER, table=table)
    # WHEN the charge runs late, and the refund is replayed
    with pytest.raises(StepAlreadyCompensatedError, match="already REFUNDED"):
        charge_payment(ORDER, table=table)
    assert refund_payment(ORDER, table=table) == {"status": "NOTHING_TO_REFUND"}
    # THEN the outcome is the same; with the item in the error, no GetItem was needed
    assert table.reads == (0 if returns_old else 2)
    assert table.items[ORDER["orderId"]]["status"] == "REFUNDED"


def test_refund_undoes_a_charge_once() -> None:
    table = MemoryTable()
    charge_payment(ORDER, table=table)
    assert refund_payment(ORDER, table=table) == {"status": "REFUNDED"}
    assert refund_payment(ORDER, table=table) == {"status": "NOTHING_TO_REFUND"}
    assert table.items[ORDER["orderId"]]["status"] == "REFUNDED"


def test_a_refund_before_any_charge_voids_it_and_a_late_charge_does_nothing() -> None:
    # GIVEN the saga gave up on ChargePayment (it timed out) and compensated before it landed
    table = MemoryTable()
    assert refund_payment(ORDER, table=table) == {"status": "NOTHING_TO_REFUND"}
    assert table.items[ORDER["orderId"]]["status"] == "VOID"
    # WHEN the timed-out charge runs late THEN it charges nothing
    with pytest.raises(StepAlreadyCompensatedError, match="already VOID"):
        charge_payment(ORDER, table=table)
    assert table.items[ORDER["orderId"]]["status"] == "VOID"


def test_a_charge_after_its_refund_does_nothing() -> None:
    table = MemoryTable()
    charge_payment(ORDER, table=table)
    refund_payment(ORDER, table=table)
    with pytest.raises(StepAlreadyCompensatedError, match="already REFUNDED"):
        charge_payment(ORDER, table=table)


def test_refund_lets_other_dynamodb_errors_through() -> None:
    with pytest.raises(ClientError):
        refund_payment(ORDER, table=FakeTable(write_error="InternalServerError"))


def test_refund_conditions_on_the_charged_status() -> None:
    table = FakeTable()
    assert refund_payment(ORDER, table=table) == {"status": "REFUNDED"}
    update = table.calls[0][1]
    assert update["ConditionExpression"] == "#status = :source"
    assert update["ExpressionAttributeValues"][":source"] == "CHARGED"
    assert update["ExpressionAttributeValues"][":target"] == "REFUNDED"


# ---------------------------------------------------------------- shipping


def test_cancel_before_the_shipment_voids_it_and_a_late_shipment_does_nothing() -> None:
    table = MemoryTable()
    assert cancel_shipment(ORDER, table=table) == {"status": "NOTHING_TO_CANCEL"}
    with pytest.raises(StepAlreadyCompensatedError):
        create_shipment(ORDER, table=table)
    assert [item["status"] for item in table.items.values()] == ["VOID"]


def test_a_shipment_is_created_once_and_cancelled_once() -> None:
    table = MemoryTable()
    first = create_shipment(ORDER, table=table)
    assert create_shipment(ORDER, table=table) == first
    assert cancel_shipment(ORDER, table=table) == {"status": "CANCELLED"}
    assert cancel_shipment(ORDER, table=table) == {"status": "NOTHING_TO_CANCEL"}
    with pytest.raises(StepAlreadyCompensatedError, match="already CANCELLED"):
        create_shipment(ORDER, table=table)


# ---------------------------------------------------------------- order status


def test_describe_failure_reads_the_lambda_error_message_from_a_json_cause() -> None:
    # GIVEN the error a fault rule answers for `--fail payment`, as Step Functions passes it on
    cause = json.dumps({"errorMessage": "injected failure in payment", "errorType": "InjectedFault"})
    # THEN the order's failure reason is the one `sandbox order` and the chaos checker expect
    assert describe_failure({"Error": "InjectedFault", "Cause": cause}) == (
        "InjectedFault: injected failure in payment"
    )
    # AND a handler's own error reads the same way, whatever else its cause carries
    cause = json.dumps(
        {"errorMessage": "card declined", "errorType": "PaymentDeclinedError", "stackTrace": ["..."]}
    )
    assert (
        describe_failure({"Error": "PaymentDeclinedError", "Cause": cause})
        == "PaymentDeclinedError: card declined"
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


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED"])
def test_a_refused_status_update_reads_the_order_from_the_error_not_again(status: str) -> None:
    # GIVEN the order is already COMPLETED, and the refused update carries it (ALL_OLD)
    table = FakeTable(write_error="ConditionalCheckFailedException", item={"status": "COMPLETED"},
                      is_item_in_error=True)  # fmt: skip
    # WHEN setting a status THEN the answer follows the stored order, and no GetItem was sent
    if status == "COMPLETED":
        assert set_order_status({"orderId": "o-1", "status": status}, table=table)["changed"] is False
    else:
        with pytest.raises(InvalidTransitionError, match="cannot move from COMPLETED to FAILED"):
            set_order_status({"orderId": "o-1", "status": status}, table=table)
    assert [name for name, _ in table.calls] == ["update_item"]
    assert table.calls[0][1]["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


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

    return {"charge": Action("ChargePayment", run), "refund": Action("RefundPayment", run)}, ran


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


@pytest.mark.parametrize("action", ["charge", "refund"])
def test_handle_step_reads_no_fault_from_the_order(actions: Any, action: str) -> None:
    # GIVEN an order that still carries a faults field (faults are rules at the invoke boundary now)
    table, ran = actions
    event = step_event(action, faults={"fail": "payment", "flaky": {"payment": 3}})
    # WHEN its step runs THEN the action runs as for any order: the handlers hold no fault code
    assert handle_step(event, Context(), service="payment", actions=table, logger=Logger(service="test")) == {
        "ok": True
    }
    assert [command["step"] for command in ran] == [table[action].step]


def test_handle_step_refuses_an_unknown_action(actions: Any) -> None:
    table, _ = actions
    with pytest.raises(ValueError, match="unknown payment action 'steal'"):
        handle_step(
            step_event("steal"), Context(), service="payment", actions=table, logger=Logger(service="test")
        )


# ---------------------------------------------------------------- idempotent hits in the logs


@pytest.fixture
def memory_store(monkeypatch: pytest.MonkeyPatch) -> MemoryPersistenceLayer:
    store = MemoryPersistenceLayer()
    monkeypatch.setattr(steps, "idempotency_store", lambda: store)
    return store


def run_logged(step: Any, logger: Logger, event: dict[str, Any] | None = None) -> dict[str, Any]:
    return steps.handle_step(event or step_event("charge"), Context(), service="payment",
                             actions={"charge": Action("ChargePayment", step)}, logger=logger)  # fmt: skip


def test_a_step_served_from_its_idempotency_record_is_logged_as_a_hit(
    memory_store: MemoryPersistenceLayer,
) -> None:
    ran: list[dict[str, Any]] = []

    def charge_once(command: dict[str, Any]) -> dict[str, Any]:
        ran.append(command)
        return {"status": "CHARGED"}

    charge = steps.idempotent_step(charge_once)
    output = io.StringIO()
    logger = Logger(service="test-hits", logger_handler=logging.StreamHandler(output))
    # WHEN the same step of the same order is called twice
    for _ in range(2):
        run_logged(charge, logger)
    # THEN it ran once, and the second call is logged as an idempotent hit
    assert len(ran) == 1
    logged = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [line["idempotent_hit"] for line in logged] == [False, True]
    assert all(line["correlation_id"] == ORDER["orderId"] for line in logged)


def test_a_business_error_is_stored_so_a_replay_meets_it_without_running_the_step(
    memory_store: MemoryPersistenceLayer,
) -> None:
    # GIVEN a reservation that fails for lack of stock
    stock = {"kettle": 0}
    attempts: list[int] = []

    def reserve(command: dict[str, Any]) -> dict[str, Any]:
        attempts.append(stock["kettle"])
        if stock["kettle"] < 1:
            raise OutOfStockError("kettle: 0 in stock, 1 wanted")
        stock["kettle"] -= 1
        return {"reserved": True}

    step = steps.idempotent_step(reserve)
    output = io.StringIO()
    logger = Logger(service="test-business", logger_handler=logging.StreamHandler(output))
    with pytest.raises(OutOfStockError, match="0 in stock"):
        run_logged(step, logger)
    # WHEN stock comes back and the same order's step is replayed
    stock["kettle"] = 10
    with pytest.raises(OutOfStockError, match="0 in stock") as replayed:
        run_logged(step, logger)
    # THEN the replay raised the stored error under its own name, ran nothing and took no stock
    assert type(replayed.value) is OutOfStockError
    assert attempts == [0] and stock["kettle"] == 10
    logged = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [(line["error_type"], line["idempotent_hit"]) for line in logged] == [
        ("OutOfStockError", False),
        ("OutOfStockError", True),
    ]


def test_other_errors_are_not_stored_so_the_step_runs_again(memory_store: MemoryPersistenceLayer) -> None:
    calls: list[int] = []

    def flaky(command: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise TransientStepError("provider timed out")
        return {"status": "CHARGED"}

    step = steps.idempotent_step(flaky)
    logger = Logger(service="test-transient", logger_handler=logging.StreamHandler(io.StringIO()))
    with pytest.raises(TransientStepError):
        run_logged(step, logger)
    assert run_logged(step, logger) == {"status": "CHARGED"}
    assert len(calls) == 2 and step.was_replayed is False


def test_a_failing_step_logs_its_error_with_the_order() -> None:
    # GIVEN a charge that the card provider declines
    def decline(command: dict[str, Any]) -> dict[str, Any]:
        raise PaymentDeclinedError("card declined")

    output = io.StringIO()
    logger = Logger(service="test-failures", logger_handler=logging.StreamHandler(output))
    # WHEN the step runs THEN the error goes to the saga, logged with its step, type and order
    with pytest.raises(PaymentDeclinedError):
        handle_step(
            step_event("charge"), Context(), service="payment",
            actions={"charge": Action("ChargePayment", decline)}, logger=logger,
        )  # fmt: skip
    line = json.loads(output.getvalue())
    assert (line["level"], line["message"], line["error_type"]) == (
        "ERROR",
        "ChargePayment failed",
        "PaymentDeclinedError",
    )
    assert line["correlation_id"] == ORDER["orderId"]


# ---------------------------------------------------------------- an earlier attempt still running


def in_progress_for(calls: int) -> tuple[Any, list[float]]:
    """A step whose idempotency record is held by an earlier attempt for its first ``calls`` calls."""
    seen: list[float] = []

    def run(*, command: dict[str, Any]) -> dict[str, Any]:
        seen.append(time.monotonic())
        if len(seen) <= calls:
            raise IdempotencyAlreadyInProgressError("in progress")
        return {"status": "CHARGED"}

    return run, seen


def test_a_step_waits_for_an_earlier_attempt_of_itself_and_takes_its_result() -> None:
    # GIVEN the first attempt timed out in the state machine but still holds the record for a while
    run, seen = in_progress_for(calls=3)
    # WHEN the retry runs
    result = steps.run_after_earlier_attempt(run, dict(ORDER), Context(), Logger(service="test"))
    # THEN it waited with growing pauses and returned what the earlier attempt left, instead of failing
    assert result == {"status": "CHARGED"}
    pauses = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert len(pauses) == 3
    assert pauses[0] < pauses[-1]


def test_the_wait_for_an_earlier_attempt_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an earlier attempt that never lets go within the bound
    monkeypatch.setattr(steps, "IN_PROGRESS_WAIT_SECONDS", 0.3)
    run, seen = in_progress_for(calls=1000)
    started = time.monotonic()
    # WHEN the step runs THEN it gives up with the library's error (which the state machine retries)
    with pytest.raises(IdempotencyAlreadyInProgressError):
        steps.run_after_earlier_attempt(run, dict(ORDER), Context(), Logger(service="test"))
    assert time.monotonic() - started < 1.0
    assert len(seen) > 1


def test_the_wait_never_outlives_the_invocation() -> None:
    class EndingContext(Context):
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 1_100  # 0.1 s left once a second of margin is kept

    run, _ = in_progress_for(calls=1000)
    started = time.monotonic()
    with pytest.raises(IdempotencyAlreadyInProgressError):
        steps.run_after_earlier_attempt(run, dict(ORDER), EndingContext(), Logger(service="test"))
    assert time.monotonic() - started < 0.5
