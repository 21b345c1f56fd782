"""Final order status: a conditional write that only ever moves an order forward."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import named_table
from shared.errors import InvalidTransitionError
from shared.records import ALL_OLD, stored_item
from shared.status import FAILED, allowed_predecessors


def describe_failure(error: dict[str, Any] | None) -> str | None:
    """A one-line reason from a Catch's ``{Error, Cause}``; Lambda causes are JSON."""
    if not error:
        return None
    name = error.get("Error", "Error")
    cause = error.get("Cause") or ""
    try:
        message = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        message = cause
    return f"{name}: {message}" if message else name


def set_order_status(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Move the order to ``command['status']``, refusing to move it backwards."""
    table = table or named_table("ORDERS_TABLE")
    order_id, status = command["orderId"], command["status"]
    names = {"#status": "status"}
    values: dict[str, Any] = {":new": status, ":now": datetime.now(UTC).isoformat()}
    update = "SET #status = :new, updatedAt = :now"
    reason = describe_failure(command.get("error")) if status == FAILED else None
    if reason:
        update += ", failureReason = :reason"
        values[":reason"] = reason
    predecessors = allowed_predecessors(status)
    condition = " OR ".join(f"#status = :from{i}" for i in range(len(predecessors)))
    values.update({f":from{i}": source for i, source in enumerate(predecessors)})
    try:
        table.update_item(
            Key={"pk": f"ORDER#{order_id}", "sk": "ORDER"},
            UpdateExpression=update,
            ConditionExpression=f"attribute_exists(pk) AND ({condition})",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure=ALL_OLD,
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        # The refused update carries the order it was checked against; read it only without.
        current = stored_item(error) or table.get_item(
            Key={"pk": f"ORDER#{order_id}", "sk": "ORDER"}, ConsistentRead=True
        ).get("Item", {})
        current_status = current.get("status")
        if current_status == status:
            return {"orderId": order_id, "status": status, "changed": False}
        raise InvalidTransitionError(
            f"order {order_id} cannot move from {current_status} to {status}"
        ) from error
    return {"orderId": order_id, "status": status, "changed": True, "reason": reason}
