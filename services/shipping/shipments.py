"""Shipments: one per order, cancelled at most once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import dynamodb, table_name


def _now() -> str:
    return datetime.now(UTC).isoformat()


def create_shipment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Record the order's shipment; an existing one is returned, never duplicated."""
    table = table or dynamodb().Table(table_name("SHIPMENTS_TABLE"))
    shipment = {
        "orderId": command["orderId"],
        "customerId": command["customerId"],
        "trackingId": f"TRK-{command['orderId'][:8].upper()}",
        "status": "CREATED",
        "createdAt": _now(),
    }
    try:
        table.put_item(Item=shipment, ConditionExpression="attribute_not_exists(orderId)")
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        existing = table.get_item(Key={"orderId": command["orderId"]}, ConsistentRead=True)["Item"]
        return {"status": existing["status"], "trackingId": existing["trackingId"]}
    return {"status": "CREATED", "trackingId": shipment["trackingId"]}


def cancel_shipment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Mark the order's shipment cancelled; a missing or cancelled one is a no-op."""
    table = table or dynamodb().Table(table_name("SHIPMENTS_TABLE"))
    try:
        table.update_item(
            Key={"orderId": command["orderId"]},
            UpdateExpression="SET #status = :cancelled, cancelledAt = :now",
            ConditionExpression="#status = :created",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":cancelled": "CANCELLED", ":created": "CREATED", ":now": _now()},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return {"status": "NOTHING_TO_CANCEL"}
    return {"status": "CANCELLED"}
