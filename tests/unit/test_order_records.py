"""The order API's writes and reads: the order + outbox transaction, product checks, saga views."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from order_api.models import DuplicateOrderError, OrderRequest, PriceConflictError, RequestError
from order_api.orders import (
    build_order_records,
    execution_arn,
    execution_status,
    list_orders,
    order_id_for_key,
    place_order,
    price_from_catalog,
    read_saga,
)

NOW = "2024-05-01T12:00:00+00:00"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:saga-sandbox-order-saga"


def make_request(**extra: Any) -> OrderRequest:
    return OrderRequest.model_validate(
        {
            "customerId": "c-1",
            "items": [
                {"productId": "espresso-beans", "quantity": 2, "price": Decimal("24.50")},
                {"productId": "mug", "quantity": 1, "price": 12},
            ],
            **extra,
        }
    )


def test_build_order_records_keys_both_records_by_the_same_order_id() -> None:
    # GIVEN a valid request and an order id
    order, outbox = build_order_records(make_request(), "o-123", NOW)
    # THEN the order item and its outbox record share the id, and the order starts PENDING
    assert (order["pk"], order["sk"]) == ("ORDER#o-123", "ORDER")
    assert (outbox["pk"], outbox["sk"]) == ("OUTBOX#o-123", "OUTBOX")
    assert order["orderId"] == outbox["orderId"] == "o-123"
    assert order["status"] == "PENDING"
    assert order["totalAmount"] == Decimal("61.00")
    assert order["createdAt"] == order["updatedAt"] == outbox["createdAt"] == NOW
    assert outbox["eventType"] == "OrderPlaced"
    assert "faults" not in order


def test_outbox_payload_is_the_order_as_json_without_keys() -> None:
    _, outbox = build_order_records(make_request(), "o-123", NOW)
    payload = json.loads(outbox["payload"])
    assert payload["orderId"] == "o-123"
    assert payload["status"] == "PENDING"
    assert payload["totalAmount"] == 61
    assert payload["items"][0] == {"productId": "espresso-beans", "quantity": 2, "price": 24.5}
    assert "pk" not in payload
    assert "faults" not in payload


def test_execution_arn_is_the_order_id_under_the_state_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE_ARN)
    assert execution_arn("o-1") == (
        "arn:aws:states:us-east-1:123456789012:execution:saga-sandbox-order-saga:o-1"
    )


def test_execution_arn_without_the_environment_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_MACHINE_ARN", raising=False)
    with pytest.raises(KeyError):
        execution_arn("o-1")


CATALOG = {"espresso-beans": "24.50", "mug": "12.00", "espresso-machine": "2499.00"}


class RecordingClient:
    """Answers catalog reads from CATALOG and records the transactions."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        assert request["ProjectionExpression"] == "productId, price"
        products = [key["productId"]["S"] for key in request["Keys"]]
        found = [{"productId": {"S": p}, "price": {"N": CATALOG[p]}} for p in products if p in CATALOG]
        return {"Responses": {table: found}}

    def transact_write_items(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {}


def test_place_order_writes_order_and_outbox_in_one_conditional_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERS_TABLE", "orders")
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    client = RecordingClient()
    response = place_order(make_request(), dynamodb_client=client)
    ((call,),) = [client.calls]
    puts = [entry["Put"] for entry in call["TransactItems"]]
    assert [put["Item"]["pk"]["S"] for put in puts] == [
        f"ORDER#{response['orderId']}",
        f"OUTBOX#{response['orderId']}",
    ]
    assert all(put["TableName"] == "orders" for put in puts)
    assert all(put["ConditionExpression"] == "attribute_not_exists(pk)" for put in puts)
    assert puts[0]["Item"]["totalAmount"] == {"N": "61.00"}
    assert response["status"] == "PENDING"
    assert response["totalAmount"] == 61
    datetime.fromisoformat(response["executedAt"])


def test_an_order_placed_with_a_key_is_named_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN two orders placed with keys, and two without
    monkeypatch.setenv("ORDERS_TABLE", "orders")
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    client = RecordingClient()
    keyed = [place_order(make_request(), client, idempotency_key=key)["orderId"] for key in ("k1", "k2")]
    unkeyed = [place_order(make_request(), client)["orderId"] for _ in range(2)]
    # THEN a keyed order's id is its key's (a client knows it before asking), and both records carry it
    assert keyed == [order_id_for_key("k1"), order_id_for_key("k2")]
    puts = [entry["Put"]["Item"]["pk"]["S"] for entry in client.calls[0]["TransactItems"]]
    assert puts == [f"ORDER#{keyed[0]}", f"OUTBOX#{keyed[0]}"]
    # AND an order without a key gets a fresh id each time
    assert len(set(unkeyed)) == 2 and not set(unkeyed) & set(keyed)


def cancelled_transaction(
    client_factory: Any,
    reasons: tuple[str, ...] | list[str] = ("ConditionalCheckFailed", "ConditionalCheckFailed"),
) -> tuple[Any, Stubber]:
    """A DynamoDB client whose catalog read prices the order and whose transaction is cancelled."""
    client = client_factory("dynamodb")
    stubber = Stubber(client)
    stubber.add_response("batch_get_item", {"Responses": {"inv": [
        {"productId": {"S": p}, "price": {"N": price}} for p, price in CATALOG.items()
    ]}})  # fmt: skip
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled, please refer cancellation reasons for specific reasons "
        "[ConditionalCheckFailed, ConditionalCheckFailed]",
        modeled_fields={"CancellationReasons": [{"Code": code} for code in reasons]},
    )
    return client, stubber


def test_a_key_that_already_placed_its_order_is_a_duplicate(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an order whose records already exist (its key placed it once, its idempotency record expired)
    monkeypatch.setenv("ORDERS_TABLE", "orders")
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    client, stubber = cancelled_transaction(client_factory)
    # WHEN the key places it again THEN it is a DuplicateOrderError (a 409) naming the order, not the key
    with (
        stubber,
        pytest.raises(DuplicateOrderError, match="already placed with this Idempotency-Key") as raised,
    ):
        place_order(make_request(), client, idempotency_key="secret-key-1")
    assert order_id_for_key("secret-key-1") in str(raised.value)
    assert "secret-key-1" not in str(raised.value)
    stubber.assert_no_pending_responses()


def test_a_transaction_cancelled_for_a_conflict_is_not_called_a_duplicate(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a keyed order whose transaction lost a race with another write (not its key's earlier order)
    monkeypatch.setenv("ORDERS_TABLE", "orders")
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    client, stubber = cancelled_transaction(client_factory, reasons=["TransactionConflict", "None"])
    # WHEN it is placed THEN the cancel goes back to the caller as it is (a 5xx the client retries)
    with stubber, pytest.raises(client.exceptions.TransactionCanceledException):
        place_order(make_request(), client, idempotency_key="secret-key-2")


def test_a_cancelled_transaction_without_a_key_is_not_called_a_duplicate(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an order without a key, whose fresh id cannot have been used: a cancel is not a duplicate
    monkeypatch.setenv("ORDERS_TABLE", "orders")
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    client, stubber = cancelled_transaction(client_factory)
    with stubber, pytest.raises(client.exceptions.TransactionCanceledException):
        place_order(make_request(), client)


def priced_items(request: OrderRequest) -> list[tuple[str, Decimal | None]]:
    return [(item.productId, item.price) for item in request.items]


@pytest.fixture
def catalog_client(monkeypatch: pytest.MonkeyPatch) -> RecordingClient:
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    monkeypatch.setenv("ORDERS_TABLE", "orders")
    return RecordingClient()


def test_lines_without_a_price_are_priced_from_the_catalog(catalog_client: RecordingClient) -> None:
    # GIVEN an order that names products and quantities only
    request = OrderRequest.model_validate(
        {"customerId": "c-1", "items": [{"productId": "espresso-machine", "quantity": 2}]}
    )
    # WHEN it is placed THEN the catalog sets the price and the total
    priced = price_from_catalog(request, dynamodb_client=catalog_client)
    assert priced_items(priced) == [("espresso-machine", Decimal("2499.00"))]
    assert priced.total_amount == Decimal("4998.00")


@pytest.mark.parametrize("sent", [Decimal("0.01"), Decimal("2498.99"), 2500])
def test_a_client_price_that_disagrees_with_the_catalog_is_refused_and_nothing_written(
    catalog_client: RecordingClient, sent: str
) -> None:
    # GIVEN a tampered (or stale) price for the espresso machine
    request = OrderRequest.model_validate(
        {"customerId": "c-1", "items": [{"productId": "espresso-machine", "quantity": 1, "price": sent}]}
    )
    # WHEN it is placed THEN it is a conflict naming the catalog's price, and no transaction ran
    shown = Decimal(sent).quantize(Decimal("0.01"))  # prices are compared and shown in cents
    with pytest.raises(PriceConflictError, match=rf"^price of espresso-machine is 2499\.00, not {shown}:"):
        place_order(request, dynamodb_client=catalog_client)
    assert catalog_client.calls == []


def test_a_client_price_equal_to_the_catalogs_is_accepted_whatever_its_form(
    catalog_client: RecordingClient,
) -> None:
    request = make_request()  # 24.50 and 12 (an int): the same money as the catalog's 12.00
    assert priced_items(price_from_catalog(request, dynamodb_client=catalog_client)) == [
        ("espresso-beans", Decimal("24.50")),
        ("mug", Decimal("12.00")),
    ]


def test_unknown_products_are_refused(catalog_client: RecordingClient) -> None:
    request = OrderRequest.model_validate(
        {
            "customerId": "c-1",
            "items": [{"productId": "nosuch", "quantity": 1}, {"productId": "mug", "quantity": 1}],
        }
    )
    with pytest.raises(RequestError, match=r"^unknown productId: nosuch$"):
        price_from_catalog(request, dynamodb_client=catalog_client)


def test_unprocessed_catalog_keys_are_read_again(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a catalog read that leaves one key unprocessed (DynamoDB may, under load)
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    client = client_factory("dynamodb")
    with Stubber(client) as stubber:
        stubber.add_response(
            "batch_get_item",
            {
                "Responses": {"inv": [{"productId": {"S": "mug"}, "price": {"N": "12.00"}}]},
                "UnprocessedKeys": {"inv": {"Keys": [{"productId": {"S": "espresso-beans"}}]}},
            },
            {"RequestItems": ANY},
        )
        stubber.add_response(
            "batch_get_item",
            {"Responses": {"inv": [{"productId": {"S": "espresso-beans"}, "price": {"N": "24.50"}}]}},
            {
                "RequestItems": {
                    "inv": {
                        "Keys": [{"productId": {"S": "espresso-beans"}}],
                        "ProjectionExpression": "productId, price",
                    }
                }
            },
        )
        # WHEN pricing THEN the second read fills in the missing price
        priced = price_from_catalog(make_request(), dynamodb_client=client)
        stubber.assert_no_pending_responses()
    assert priced_items(priced) == [("espresso-beans", Decimal("24.50")), ("mug", Decimal("12.00"))]


def test_read_saga_before_the_publisher_ran_is_not_started(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE_ARN)
    sfn = client_factory("stepfunctions")
    with Stubber(sfn) as stubber:
        stubber.add_client_error("get_execution_history", service_error_code="ExecutionDoesNotExist")
        assert read_saga("o-1", sfn=sfn) == {"sagaStatus": "NOT_STARTED", "steps": [], "compensations": []}


def test_read_saga_summarizes_every_history_page(
    client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE_ARN)
    arn = execution_arn("o-1")
    t = datetime(2024, 5, 1, tzinfo=UTC)

    def event(number: int, kind: str, **details: Any) -> dict[str, Any]:
        return {"id": number, "type": kind, "timestamp": t, **details}

    first = [
        event(1, "TaskStateEntered", stateEnteredEventDetails={"name": "ChargePayment"}),
        event(2, "TaskScheduled"),
        event(
            3,
            "TaskFailed",
            taskFailedEventDetails={
                "error": "PaymentDeclinedError",
                "resourceType": "lambda",
                "resource": "invoke",
            },
        ),
        event(4, "TaskStateExited", stateExitedEventDetails={"name": "ChargePayment"}),
    ]
    second = [
        event(5, "TaskStateEntered", stateEnteredEventDetails={"name": "ReleaseInventory"}),
        event(6, "TaskScheduled"),
        event(7, "TaskSucceeded"),
        event(8, "TaskStateExited", stateExitedEventDetails={"name": "ReleaseInventory"}),
        event(9, "ExecutionFailed"),
    ]
    sfn = client_factory("stepfunctions")
    with Stubber(sfn) as stubber:
        # One call per page, the largest pages, and no DescribeExecution: the history says the status
        stubber.add_response(
            "get_execution_history",
            {"events": first, "nextToken": "page-2"},
            {"executionArn": arn, "maxResults": 1000},
        )
        stubber.add_response(
            "get_execution_history",
            {"events": second},
            {"executionArn": arn, "nextToken": "page-2", "maxResults": 1000},
        )
        saga = read_saga("o-1", sfn=sfn)
        stubber.assert_no_pending_responses()
    assert saga["sagaStatus"] == "FAILED"
    assert [(step["name"], step["status"]) for step in saga["steps"]] == [
        ("ChargePayment", "FAILED"),
        ("ReleaseInventory", "SUCCEEDED"),
    ]
    assert saga["compensations"] == ["ReleaseInventory"]


@pytest.mark.parametrize(
    ("closing", "status"),
    [
        (None, "RUNNING"),
        ("ExecutionSucceeded", "SUCCEEDED"),
        ("ExecutionFailed", "FAILED"),
        ("ExecutionTimedOut", "TIMED_OUT"),
        ("ExecutionAborted", "ABORTED"),
    ],
)
def test_the_saga_status_is_its_history_closing_event(closing: str | None, status: str) -> None:
    # GIVEN a history that ends (or not yet) with a closing event, listed out of order
    events = [{"id": 2, "type": "TaskStateEntered"}, {"id": 1, "type": "ExecutionStarted"}]
    if closing:
        events.insert(0, {"id": 3, "type": closing})
    # WHEN reading its status THEN it is DescribeExecution's name for that event
    assert execution_status(events) == status


class ScanTable:
    def __init__(self, pages: list[dict[str, Any]]):
        self.pages = pages
        self.calls: list[dict[str, Any]] = []

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(dict(kwargs))
        return self.pages[len(self.calls) - 1]


def test_list_orders_follows_pages_and_sorts_newest_first() -> None:
    table = ScanTable(
        [
            {
                "Items": [{"orderId": "a", "createdAt": "2024-01-01", "totalAmount": Decimal("61.00")}],
                "LastEvaluatedKey": {"pk": "x"},
            },
            {"Items": [{"orderId": "b", "createdAt": "2024-03-01", "totalAmount": Decimal("12.50")}]},
        ]
    )
    orders = list_orders(table=table)
    assert [order["orderId"] for order in orders] == ["b", "a"]
    assert orders[0]["totalAmount"] == 12.5
    assert orders[1]["totalAmount"] == 61
    assert table.calls[1]["ExclusiveStartKey"] == {"pk": "x"}
    assert list_orders(limit=1, table=ScanTable(table.pages)) == orders[:1]
