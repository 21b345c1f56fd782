"""Charges and refunds: one charge per order, refunded at most once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import dynamodb, table_name
from shared.errors import PaymentDeclinedError

# The sandbox's stand-in for a card limit: larger charges are declined (a business error).
CHARGE_LIMIT = Decimal("10000.00")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def charge_payment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Record the order's charge, or raise PaymentDeclinedError over the limit."""
    table = table or dynamodb().Table(table_name("PAYMENTS_TABLE"))
    amount = Decimal(str(command["totalAmount"]))
    if amount > CHARGE_LIMIT:
        raise PaymentDeclinedError(f"charge of {amount} declined: over the {CHARGE_LIMIT} limit")
    charge = {
        "orderId": command["orderId"],
        "customerId": command["customerId"],
        "amount": amount,
        "status": "CHARGED",
        "chargedAt": _now(),
    }
    try:
        table.put_item(Item=charge, ConditionExpression="attribute_not_exists(orderId)")
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        # Already charged (e.g. the idempotency record expired): never charge twice.
        existing = table.get_item(Key={"orderId": command["orderId"]}, ConsistentRead=True)["Item"]
        return {"status": existing["status"], "amount": str(existing["amount"])}
    return {"status": "CHARGED", "amount": str(amount)}


def refund_payment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Mark the order's charge refunded; a missing or already refunded charge is a no-op."""
    table = table or dynamodb().Table(table_name("PAYMENTS_TABLE"))
    try:
        table.update_item(
            Key={"orderId": command["orderId"]},
            UpdateExpression="SET #status = :refunded, refundedAt = :now",
            ConditionExpression="#status = :charged",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":refunded": "REFUNDED", ":charged": "CHARGED", ":now": _now()},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return {"status": "NOTHING_TO_REFUND"}
    return {"status": "REFUNDED"}
