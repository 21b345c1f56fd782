"""Stock reservations: all items of an order are reserved, or none."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.aws import client, table_name
from shared.errors import OutOfStockError


def _stock_updates(items: list[dict[str, Any]], sign: int, table: str) -> list[dict[str, Any]]:
    updates = []
    for item in items:
        update: dict[str, Any] = {
            "TableName": table,
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


def reserve_stock(command: dict[str, Any], dynamodb: Any = None) -> dict[str, Any]:
    """Take every item's quantity out of stock in one transaction, or raise OutOfStockError."""
    dynamodb = dynamodb or client("dynamodb")
    items = command["items"]
    try:
        dynamodb.transact_write_items(TransactItems=_stock_updates(items, -1, table_name("INVENTORY_TABLE")))
    except ClientError as error:
        if error.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons = error.response.get("CancellationReasons") or []
        short = [
            items[index]["productId"]
            for index, reason in enumerate(reasons)
            if reason.get("Code") == "ConditionalCheckFailed"
        ]
        raise OutOfStockError(f"not enough stock for {', '.join(short) or 'the ordered items'}") from error
    return {
        "status": "RESERVED",
        "items": [{"productId": i["productId"], "quantity": i["quantity"]} for i in items],
    }


def release_stock(command: dict[str, Any], dynamodb: Any = None) -> dict[str, Any]:
    """Put every item's quantity back into stock in one transaction."""
    dynamodb = dynamodb or client("dynamodb")
    dynamodb.transact_write_items(
        TransactItems=_stock_updates(command["items"], +1, table_name("INVENTORY_TABLE"))
    )
    return {"status": "RELEASED"}
