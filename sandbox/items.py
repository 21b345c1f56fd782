"""DynamoDB items as plain Python: what the operator side reads from the tables."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def plain(value: Any) -> Any:
    """DynamoDB values as JSON-friendly ones (Decimal -> int or float, sets -> lists)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, list | set | tuple):
        return [plain(inner) for inner in value]
    return value


def plain_item(item: dict[str, Any]) -> dict[str, Any]:
    """A low-level client's item (attribute-value maps) as plain Python."""
    from boto3.dynamodb.types import TypeDeserializer  # imports boto3: only where items are read

    deserializer = TypeDeserializer()
    return dict(plain({key: deserializer.deserialize(value) for key, value in item.items()}))
