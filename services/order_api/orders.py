"""Orders: the order and its outbox record are written in one transaction, or not at all."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeSerializer

from order_api.models import CENT, DuplicateOrderError, OrderRequest, RequestError
from shared.aws import client, named_table, table_name
from shared.saga_history import compensations_run, summarize_steps
from shared.status import PENDING
from shared.trace_events import TraceEvent

_serializer = TypeSerializer()
# An order placed with an Idempotency-Key is named after it (a UUID of the key in this namespace):
# a client knows its order's id before it asks, and a key never places two orders, even after its
# idempotency record expired.
ORDER_ID_NAMESPACE = uuid.UUID("6f1c2a8e-3b4d-5e6f-8a9b-0c1d2e3f4a5b")
logger = Logger(child=True)


def _to_dynamodb(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB values as JSON-friendly ones (Decimal -> int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    return value


CATALOG_READ_ROUNDS = 3  # BatchGetItem may leave keys unprocessed under load; ask again for those


def read_catalog_prices(products: list[str], dynamodb_client: Any = None) -> dict[str, Decimal]:
    """The catalog price of each product the inventory knows (products it does not know are absent)."""
    dynamodb_client = dynamodb_client or client("dynamodb")
    table = table_name("INVENTORY_TABLE")
    keys = [{"productId": {"S": product}} for product in sorted(set(products))]
    prices: dict[str, Decimal] = {}
    for _ in range(CATALOG_READ_ROUNDS):
        response = dynamodb_client.batch_get_item(
            RequestItems={table: {"Keys": keys, "ProjectionExpression": "productId, price"}}
        )
        for item in response["Responses"].get(table, []):
            # DynamoDB stores 2499.00 as 2499: prices are money, in cents.
            prices[item["productId"]["S"]] = Decimal(item["price"]["N"]).quantize(CENT)
        keys = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if not keys:
            return prices
    raise RuntimeError(f"the catalog left {len(keys)} product(s) unread after {CATALOG_READ_ROUNDS} tries")


def price_from_catalog(request: OrderRequest, dynamodb_client: Any = None) -> OrderRequest:
    """The request priced by the catalog: unknown products are a 400, a disagreeing price a 409."""
    prices = read_catalog_prices([item.productId for item in request.items], dynamodb_client)
    missing = sorted({item.productId for item in request.items} - set(prices))
    if missing:
        raise RequestError(f"unknown productId: {', '.join(missing)}")
    return request.priced(prices)


def build_order_records(
    request: OrderRequest, order_id: str, now: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ORDER# item and its OUTBOX# record, as the transaction writes them."""
    order = {
        "orderId": order_id,
        "customerId": request.customerId,
        "items": [item.model_dump() for item in request.items],
        "totalAmount": request.total_amount,
        "status": PENDING,
        "createdAt": now,
        "updatedAt": now,
    }
    payload = json.dumps(_plain(order))
    outbox = {
        "pk": f"OUTBOX#{order_id}",
        "sk": "OUTBOX",
        "eventType": "OrderPlaced",
        "orderId": order_id,
        "payload": payload,
        "createdAt": now,
    }
    return {"pk": f"ORDER#{order_id}", "sk": "ORDER", **order}, outbox


def order_id_for_key(idempotency_key: str) -> str:
    """The id of the order an Idempotency-Key places."""
    return str(uuid.uuid5(ORDER_ID_NAMESPACE, idempotency_key))


def place_order(
    request: OrderRequest, dynamodb_client: Any = None, *, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Price the order from the catalog, write it and its outbox record atomically; the 201 body."""
    dynamodb_client = dynamodb_client or client("dynamodb")
    request = price_from_catalog(request, dynamodb_client)
    order_id = order_id_for_key(idempotency_key) if idempotency_key else str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    order, outbox = build_order_records(request, order_id, now)
    table = table_name("ORDERS_TABLE")
    started = time.perf_counter()
    try:
        dynamodb_client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": _to_dynamodb(record),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
                for record in (order, outbox)
            ]
        )
    except dynamodb_client.exceptions.TransactionCanceledException as error:
        reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
        if idempotency_key is None or "ConditionalCheckFailed" not in reasons:
            raise  # a conflict or throttle, not this key's earlier order: the client retries
        raise DuplicateOrderError(
            f"order {order_id} was already placed with this Idempotency-Key; use a new key for a new order"
        ) from error
    logger.info(
        "order and outbox written",
        extra={
            "trace_event": TraceEvent.ORDER_WRITTEN,
            "order_id": order_id,
            "items": [order["pk"], outbox["pk"]],
            "transaction_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return {
        "orderId": order_id,
        "status": PENDING,
        "totalAmount": _plain(request.total_amount),
        "message": "Order created successfully",
        "executedAt": now,
    }


def execution_arn(order_id: str) -> str:
    """The saga execution of an order (its name is the order id)."""
    machine = os.environ["STATE_MACHINE_ARN"]
    return machine.replace(":stateMachine:", ":execution:", 1) + f":{order_id}"


HISTORY_PAGE_SIZE = 1000  # GetExecutionHistory's largest page
# An execution's closing history event -> its status (DescribeExecution's names).
CLOSING_EVENTS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


def execution_status(events: list[dict[str, Any]]) -> str:
    """The execution's status from its history: its closing event's, RUNNING without one."""
    for event in sorted(events, key=lambda e: int(e["id"]), reverse=True):
        status = CLOSING_EVENTS.get(event["type"])
        if status:
            return status
    return "RUNNING"


def read_saga(order_id: str, sfn: Any = None) -> dict[str, Any]:
    """The saga's status and steps for an order; NOT_STARTED before the publisher ran."""
    sfn = sfn or client("stepfunctions")
    arn = execution_arn(order_id)
    events: list[dict[str, Any]] = []
    try:
        # The history alone: its closing event is the status (no DescribeExecution), and a page
        # of the largest size holds a whole saga's history (one call).
        pages = sfn.get_paginator("get_execution_history").paginate(
            executionArn=arn, PaginationConfig={"PageSize": HISTORY_PAGE_SIZE}
        )
        for page in pages:
            events.extend(page["events"])
    except sfn.exceptions.ExecutionDoesNotExist:
        return {"sagaStatus": "NOT_STARTED", "steps": [], "compensations": []}
    steps = summarize_steps(events)
    return {"sagaStatus": execution_status(events), "steps": steps, "compensations": compensations_run(steps)}


def get_order(order_id: str, table: Any = None) -> dict[str, Any] | None:
    """The order with its saga steps and notifications, or None."""
    table = table or named_table("ORDERS_TABLE")
    # The saga first: its last state writes the order's final status before the execution ends,
    # so an order read after a finished saga is never still PENDING.
    saga = read_saga(order_id)
    items = table.query(KeyConditionExpression=Key("pk").eq(f"ORDER#{order_id}"), ConsistentRead=True)[
        "Items"
    ]
    order = next((item for item in items if item["sk"] == "ORDER"), None)
    if order is None:
        return None
    notifications = [
        {
            "type": item["sk"].removeprefix("NOTIFICATION#"),
            "message": item["message"],
            "sentAt": item.get("sentAt"),
        }
        for item in items
        if item["sk"].startswith("NOTIFICATION#")
    ]
    view = {key: value for key, value in order.items() if key not in ("pk", "sk")}
    return dict(_plain({**view, "notifications": notifications, **saga}))


def list_orders(limit: int = 50, table: Any = None) -> list[dict[str, Any]]:
    """The most recent orders, newest first (a scan: fine for a sandbox's volumes)."""
    table = table or named_table("ORDERS_TABLE")
    fields = ["orderId", "customerId", "status", "totalAmount", "createdAt", "failureReason"]
    kwargs: dict[str, Any] = {
        "FilterExpression": Key("sk").eq("ORDER"),
        "ProjectionExpression": ", ".join(f"#{name}" for name in fields),
        "ExpressionAttributeNames": {f"#{name}": name for name in fields},
    }
    orders: list[dict[str, Any]] = []
    while True:
        page = table.scan(**kwargs)
        orders.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    orders.sort(key=lambda order: order.get("createdAt", ""), reverse=True)
    return list(_plain(orders[:limit]))
