"""Conditional writes that make a step's record effect happen at most once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _is_condition_failure(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


def put_if_absent(table: Any, item: dict[str, Any], key_name: str = "pk") -> bool:
    """Write ``item`` unless an item with its key exists; True when this call wrote it."""
    try:
        table.put_item(Item=item, ConditionExpression=f"attribute_not_exists({key_name})")
    except ClientError as error:
        if not _is_condition_failure(error):
            raise
        return False
    return True


def put_once(table: Any, item: dict[str, Any], key_name: str) -> dict[str, Any]:
    """Write ``item`` unless one with its key exists; return whichever item is stored.

    A second line of defence behind the idempotency record: even when that has expired, a
    replayed step finds the first write instead of writing again.
    """
    if put_if_absent(table, item, key_name):
        return item
    return dict(table.get_item(Key={key_name: item[key_name]}, ConsistentRead=True)["Item"])


def transition_once(table: Any, key: dict[str, Any], source: str, target: str, stamp: str) -> bool:
    """Move a record's status from ``source`` to ``target`` (setting ``stamp``); False if not in source."""
    try:
        table.update_item(
            Key=key,
            UpdateExpression=f"SET #status = :target, {stamp} = :now",
            ConditionExpression="#status = :source",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":target": target, ":source": source, ":now": now_iso()},
        )
    except ClientError as error:
        if not _is_condition_failure(error):
            raise
        return False
    return True
