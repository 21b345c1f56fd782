"""boto3 resources and the environment every function reads, created once per worker."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

if TYPE_CHECKING:  # the stubs are a dev tool: the Lambda runtime never imports them
    from mypy_boto3_dynamodb import DynamoDBClient, DynamoDBServiceResource
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_stepfunctions import SFNClient

EVENT_SOURCE = "saga-sandbox.orders"
PUT_EVENTS_LIMIT = 10  # entries per PutEvents call


def table_name(variable: str) -> str:
    """The table name the template passes in environment ``variable``."""
    try:
        return os.environ[variable]
    except KeyError as error:
        raise RuntimeError(f"environment variable {variable} is not set") from error


@cache
def dynamodb() -> DynamoDBServiceResource:
    """The DynamoDB service resource."""
    return boto3.resource("dynamodb")


@cache
def named_table(variable: str) -> Table:
    """The Table resource of the table environment ``variable`` names, built once per worker.

    boto3 builds a resource's class from its model on every ``Table(...)`` call (a few ms of a
    warm invocation's CPU); the name never changes within a worker.
    """
    return dynamodb().Table(table_name(variable))


# One overload per service the functions call, so mypy checks every call on what this returns.
@overload
def client(service: Literal["dynamodb"]) -> DynamoDBClient: ...
@overload
def client(service: Literal["events"]) -> EventBridgeClient: ...
@overload
def client(service: Literal["stepfunctions"]) -> SFNClient: ...
@cache
def client(service: str) -> Any:
    """A low-level client for ``service``."""
    return boto3.client(service)  # type: ignore[call-overload]


@cache
def idempotency_store() -> DynamoDBPersistenceLayer:
    """The Powertools persistence layer over the idempotency table."""
    return DynamoDBPersistenceLayer(table_name=table_name("IDEMPOTENCY_TABLE"))


def put_order_events(detail_type: str, details: list[dict[str, Any]]) -> list[str | None]:
    """Put order events on the bus, ten per PutEvents call; each entry's error, or None when put."""
    errors: list[str | None] = []
    for start in range(0, len(details), PUT_EVENTS_LIMIT):
        chunk = details[start : start + PUT_EVENTS_LIMIT]
        response = client("events").put_events(
            Entries=[
                {
                    "EventBusName": os.environ["EVENT_BUS_NAME"],
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                }
                for detail in chunk
            ]
        )
        entries = response.get("Entries") or [{}] * len(chunk)
        errors += [
            f"EventBridge rejected {detail_type}: {entry['ErrorCode']} {entry.get('ErrorMessage')}"
            if entry.get("ErrorCode")
            else None
            for entry in entries
        ]
    return errors


def put_order_event(detail_type: str, detail: dict[str, Any]) -> None:
    """Put one order event on the bus; raise when EventBridge rejects it."""
    (error,) = put_order_events(detail_type, [detail])
    if error:
        raise RuntimeError(error)
