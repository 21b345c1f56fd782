"""Stock reservations: all items of an order are reserved, or none; released at most once.

Each order's reservation is a record of its own (reservations table, keyed by order id), written in
the same transaction as the stock it takes. Releasing reads what was reserved from that record, not
from the caller, and a release that finds no reservation leaves a ``VOID`` tombstone: a reserve
that timed out and runs late then finds it and takes nothing.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.aws import client, table_name
from shared.errors import OutOfStockError, StepAlreadyCompensatedError, TransientStepError
from shared.records import VOID, now_iso

RESERVED = "RESERVED"
RELEASED = "RELEASED"


def _stock_updates(items: list[dict[str, Any]], sign: int) -> list[dict[str, Any]]:
    updates = []
    for item in items:
        update: dict[str, Any] = {
            "TableName": table_name("INVENTORY_TABLE"),
            "Key": {"productId": {"S": item["productId"]}},
            "UpdateExpression": "ADD stock :delta",
            "ExpressionAttributeValues": {":delta": {"N": str(sign * int(item["quantity"]))}},
        }
        if sign < 0:
            update["ConditionExpression"] = "attribute_exists(productId) AND stock >= :needed"
            update["ExpressionAttributeValues"][":needed"] = {"N": str(int(item["quantity"]))}
        else:
            update["ConditionExpression"] = "attribute_exists(productId)"
        updates.append({"Update": update})
    return updates


def _reservation_key(order_id: str) -> dict[str, Any]:
    return {"orderId": {"S": order_id}}


def _reserved_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"productId": i["productId"], "quantity": int(i["quantity"])} for i in items]


def read_reservation(order_id: str, dynamodb: Any) -> dict[str, Any] | None:
    """The order's reservation record (status and items), or None."""
    item = dynamodb.get_item(
        TableName=table_name("RESERVATIONS_TABLE"), Key=_reservation_key(order_id), ConsistentRead=True
    ).get("Item")
    return _reservation_of(item) if item is not None else None


def _reservation_of(item: dict[str, Any]) -> dict[str, Any]:
    items = [
        {"productId": entry["M"]["productId"]["S"], "quantity": int(entry["M"]["quantity"]["N"])}
        for entry in item.get("items", {}).get("L", [])
    ]
    return {"status": item["status"]["S"], "items": items}


def _cancelled_reservation(
    reasons: list[dict[str, Any]], index: int, order_id: str, dynamodb: Any
) -> dict[str, Any] | None:
    """The reservation a cancelled reserve met, from the transaction's reasons where they tell it.

    DynamoDB evaluates every condition of a cancelled transaction and gives each item's reason:
    ``None`` for the reservation means there was none; a failed condition carries the stored one
    (ALL_OLD). Without reasons, or without the item, it is read.
    """
    reason = reasons[index] if len(reasons) > index else {}
    if reason.get("Code") == "None":
        return None
    if reason.get("Code") == "ConditionalCheckFailed" and reason.get("Item"):
        return _reservation_of(reason["Item"])
    return read_reservation(order_id, dynamodb)


def reserve_stock(command: dict[str, Any], dynamodb: Any = None) -> dict[str, Any]:
    """Take every item's quantity out of stock and record the reservation, in one transaction."""
    dynamodb = dynamodb or client("dynamodb")
    order_id, items = command["orderId"], _reserved_items(command["items"])
    reservation = {
        "Put": {
            "TableName": table_name("RESERVATIONS_TABLE"),
            "Item": {
                **_reservation_key(order_id),
                "status": {"S": RESERVED},
                "items": {
                    "L": [
                        {"M": {"productId": {"S": i["productId"]}, "quantity": {"N": str(i["quantity"])}}}
                        for i in items
                    ]
                },
                "reservedAt": {"S": now_iso()},
            },
            "ConditionExpression": "attribute_not_exists(orderId)",
            # A cancelled transaction then says what reservation is stored: no read after it.
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    try:
        dynamodb.transact_write_items(TransactItems=[*_stock_updates(items, -1), reservation])
    except ClientError as error:
        if error.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons: list[Any] = list(error.response.get("CancellationReasons") or [])
        existing = _cancelled_reservation(reasons, len(items), order_id, dynamodb)
        if existing is not None and existing["status"] == RESERVED:
            return {"status": RESERVED, "items": existing["items"]}  # an earlier run reserved it
        if existing is not None:
            raise StepAlreadyCompensatedError(
                f"the reservation of order {order_id} is already {existing['status']}: nothing reserved"
            ) from error
        short = [
            items[index]["productId"]
            for index, reason in enumerate(reasons[: len(items)])
            if reason.get("Code") == "ConditionalCheckFailed"
        ]
        raise OutOfStockError(f"not enough stock for {', '.join(short) or 'the ordered items'}") from error
    return {"status": RESERVED, "items": items}


def release_stock(command: dict[str, Any], dynamodb: Any = None) -> dict[str, Any]:
    """Put back what the order reserved, once; with no reservation yet, void it."""
    dynamodb = dynamodb or client("dynamodb")
    order_id = command["orderId"]
    reservations = table_name("RESERVATIONS_TABLE")
    for _ in range(3):
        reservation = read_reservation(order_id, dynamodb)
        try:
            if reservation is None:
                dynamodb.put_item(
                    TableName=reservations,
                    Item={**_reservation_key(order_id), "status": {"S": VOID}, "voidedAt": {"S": now_iso()}},
                    ConditionExpression="attribute_not_exists(orderId)",
                )
                return {"status": "NOTHING_TO_RELEASE"}
            if reservation["status"] != RESERVED:
                return {"status": "NOTHING_TO_RELEASE"}
            mark_released = {
                "Update": {
                    "TableName": reservations,
                    "Key": _reservation_key(order_id),
                    "UpdateExpression": "SET #status = :released, releasedAt = :now",
                    "ConditionExpression": "#status = :reserved",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":released": {"S": RELEASED},
                        ":reserved": {"S": RESERVED},
                        ":now": {"S": now_iso()},
                    },
                }
            }
            dynamodb.transact_write_items(
                TransactItems=[mark_released, *_stock_updates(reservation["items"], +1)]
            )
            return {"status": RELEASED, "items": reservation["items"]}
        except ClientError as error:
            # The reservation changed under us (a late reserve landed, or another release won).
            if error.response["Error"]["Code"] not in (
                "ConditionalCheckFailedException",
                "TransactionCanceledException",
            ):
                raise
    raise TransientStepError(f"the reservation of order {order_id} kept changing while being released")
