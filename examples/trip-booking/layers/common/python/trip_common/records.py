"""A trip's record in a step's table: held by the step, released by its compensation.

A compensation may run before the step it undoes has landed (the step timed out, or its retry is
still in flight). Releasing writes a tombstone in that case, and holding never overwrites one of
the same execution, so a late step changes nothing once its compensation has run. A later
execution of the same trip id books it afresh.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError


@cache
def table(variable: str) -> Any:
    """The DynamoDB Table named by environment ``variable``, built once per execution environment."""
    return boto3.resource("dynamodb").Table(os.environ[variable])


def now() -> str:
    """The current time, ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def hold(
    records: Any, trip_id: str, execution: str, status: str, attributes: dict[str, Any]
) -> dict[str, Any]:
    """Write the trip's record with ``status`` unless this execution released it first; return what is stored."""
    item = {**attributes, "tripId": trip_id, "execution": execution, "status": status, "updatedAt": now()}
    try:
        records.put_item(
            Item=item,
            # A retried attempt rewrites its own record; its execution's tombstone stays.
            ConditionExpression="attribute_not_exists(tripId) OR #status = :status OR #execution <> :execution",
            ExpressionAttributeNames={"#status": "status", "#execution": "execution"},
            ExpressionAttributeValues={":status": status, ":execution": execution},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        stored: dict[str, Any] = records.get_item(Key={"tripId": trip_id}, ConsistentRead=True)["Item"]
        return stored
    return item


def release(records: Any, trip_id: str, execution: str, status: str) -> str | None:
    """Mark the trip's record ``status`` (a tombstone when nothing is held); return the status it had."""
    response = records.update_item(
        Key={"tripId": trip_id},
        UpdateExpression="SET #status = :status, #execution = :execution, updatedAt = :now",
        ExpressionAttributeNames={"#status": "status", "#execution": "execution"},
        ExpressionAttributeValues={":status": status, ":execution": execution, ":now": now()},
        ReturnValues="ALL_OLD",
    )
    previous: str | None = response.get("Attributes", {}).get("status")
    return previous
