"""boto3 resources and the environment every function reads, created once per worker."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

EVENT_SOURCE = "saga-sandbox.orders"


def table_name(variable: str) -> str:
    """The table name the template passes in environment ``variable``."""
    try:
        return os.environ[variable]
    except KeyError as error:
        raise RuntimeError(f"environment variable {variable} is not set") from error


@cache
def dynamodb() -> Any:
    """The DynamoDB service resource."""
    return boto3.resource("dynamodb")


@cache
def client(service: str) -> Any:
    """A low-level client for ``service``."""
    return boto3.client(service)  # type: ignore[call-overload]


@cache
def idempotency_store() -> DynamoDBPersistenceLayer:
    """The Powertools persistence layer over the idempotency table."""
    return DynamoDBPersistenceLayer(table_name=table_name("IDEMPOTENCY_TABLE"))


def put_order_event(detail_type: str, detail: dict[str, Any]) -> None:
    """Put one order event on the bus; raise when EventBridge rejects it."""
    response = client("events").put_events(
        Entries=[
            {
                "EventBusName": os.environ["EVENT_BUS_NAME"],
                "Source": EVENT_SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, default=str),
            }
        ]
    )
    if response.get("FailedEntryCount"):
        entry = response["Entries"][0]
        raise RuntimeError(
            f"EventBridge rejected {detail_type}: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
        )
