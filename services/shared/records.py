"""Conditional writes that make a step's record effect happen at most once, and never after its undo."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from shared.errors import StepAlreadyCompensatedError, TransientStepError

# The status a compensation leaves when it finds nothing to undo: a tombstone, so that the step it
# compensates, arriving late (it timed out and ran on), finds it and does nothing.
VOID = "VOID"
# A failed condition answers with the item it was checked against (AWS's
# ReturnValuesOnConditionCheckFailure): the step knows what is stored without reading it again.
ALL_OLD = "ALL_OLD"
_deserializer = TypeDeserializer()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def is_condition_failure(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


def stored_item(error: ClientError) -> dict[str, Any] | None:
    """The item a failed condition was checked against, when the error carries it (ALL_OLD)."""
    raw: Any = error.response.get("Item")
    return {key: _deserializer.deserialize(value) for key, value in raw.items()} if raw else None


def put_if_absent(table: Any, item: dict[str, Any], key_name: str = "pk") -> bool:
    """Write ``item`` unless an item with its key exists; True when this call wrote it."""
    try:
        table.put_item(Item=item, ConditionExpression=f"attribute_not_exists({key_name})")
    except ClientError as error:
        if not is_condition_failure(error):
            raise
        return False
    return True


def put_once(table: Any, item: dict[str, Any], key_name: str) -> dict[str, Any]:
    """Write ``item`` unless one with its key exists; return whichever item is stored.

    A second line of defence behind the idempotency record: even when that has expired, a
    replayed step finds the first write instead of writing again. A stored item in another
    status than ``item``'s means the effect was compensated (undone, or voided before it
    happened): the step raises instead of acting after its own compensation.
    """
    try:
        table.put_item(
            Item=item,
            ConditionExpression=f"attribute_not_exists({key_name})",
            ReturnValuesOnConditionCheckFailure=ALL_OLD,
        )
        return item
    except ClientError as error:
        if not is_condition_failure(error):
            raise
        stored = stored_item(error) or dict(
            table.get_item(Key={key_name: item[key_name]}, ConsistentRead=True)["Item"]
        )
    if stored["status"] != item["status"]:
        raise StepAlreadyCompensatedError(
            f"{key_name} {item[key_name]} is already {stored['status']}: this late step changes nothing"
        )
    return stored


def transition_once(table: Any, key: dict[str, Any], source: str, target: str, stamp: str) -> bool:
    """Move a record's status from ``source`` to ``target`` (setting ``stamp``); False if not in source."""
    return _transition(table, key, source, target, stamp)[0]


def _transition(
    table: Any, key: dict[str, Any], source: str, target: str, stamp: str
) -> tuple[bool, dict[str, Any] | None]:
    """(moved, the stored record when the move failed and the error carried it)."""
    try:
        table.update_item(
            Key=key,
            UpdateExpression=f"SET #status = :target, {stamp} = :now",
            ConditionExpression="#status = :source",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":target": target, ":source": source, ":now": now_iso()},
            ReturnValuesOnConditionCheckFailure=ALL_OLD,
        )
    except ClientError as error:
        if not is_condition_failure(error):
            raise
        return False, stored_item(error)
    return True, None


def undo_once(table: Any, key: dict[str, Any], source: str, target: str, stamp: str) -> bool:
    """Undo a record's effect (``source`` -> ``target``), or void it if it never happened.

    True when this call undid the effect. With no record yet, a ``VOID`` tombstone is written in
    its place, so a step invocation that times out and completes later finds it and does nothing.
    Both writes are conditional, so a step landing between them is caught on the next round.
    """
    for _ in range(3):
        is_moved, stored = _transition(table, key, source, target, stamp)
        if is_moved:
            return True
        if stored is not None and stored["status"] != source:
            return False  # already undone or voided: the failed move said so, no read needed
        if put_if_absent(table, {**key, "status": VOID, "voidedAt": now_iso()}, next(iter(key))):
            return False
        stored = table.get_item(Key=key, ConsistentRead=True).get("Item")
        if stored and stored["status"] != source:
            return False
    raise TransientStepError(f"record {key} kept changing while it was being undone")
