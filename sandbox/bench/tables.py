"""Reading and writing the stack's tables for a run: the catalog, stock top-ups, the end state.

The end state also holds which of the run's orders are in the outbox's on-failure queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from sandbox.bench.plan import Product
from sandbox.catalog import DEMO_PRODUCTS
from sandbox.dlq import DeadLetter, list_dead_letters
from sandbox.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

BATCH_GET_LIMIT = 100  # keys per BatchGetItem call
RELIST_AFTER = 10.0  # seconds after which the on-failure queue is listed again even at the same size
# Letters listed at most: every one, as letters of earlier runs stay in the queue until redriven.
DEAD_LETTERS_LISTED = 100_000
QUEUE_SIZE_ATTRIBUTES: list[QueueAttributeNameType] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
]


@cache
def _deserializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer  # boto3 on first use: the CLI starts without it

    return TypeDeserializer()


def _item(raw: dict[str, Any]) -> dict[str, Any]:
    """A low-level item as Python values (numbers stay Decimal, for exact amounts)."""
    return {key: _deserializer().deserialize(value) for key, value in raw.items()}


def batch_get(
    dynamodb: DynamoDBClient,
    table: str,
    keys: list[dict[str, Any]],
    projection: str | None = None,
    names: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every item of ``keys`` that exists (consistent reads, 100 keys a call, unprocessed keys re-asked)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request: KeysAndAttributesTypeDef = {
            "Keys": keys[start : start + BATCH_GET_LIMIT],
            "ConsistentRead": True,
        }
        if projection:
            request["ProjectionExpression"] = projection
        if names:
            request["ExpressionAttributeNames"] = names
        while request["Keys"]:
            response = dynamodb.batch_get_item(RequestItems={table: request})
            found += [_item(raw) for raw in response["Responses"].get(table, [])]
            unprocessed = response.get("UnprocessedKeys", {}).get(table)
            request["Keys"] = unprocessed.get("Keys", []) if unprocessed else []
    return found


def order_key(order_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"ORDER#{order_id}"}, "sk": {"S": "ORDER"}}


def read_catalog(dynamodb: DynamoDBClient, table: str) -> dict[str, Product]:
    """The demo products in the inventory table, with their current stock."""
    items = batch_get(dynamodb, table, [{"productId": {"S": pid}} for pid in DEMO_PRODUCTS])
    return {
        item["productId"]: Product(item["productId"], Decimal(item["price"]), int(item["stock"]))
        for item in items
        if "price" in item and "stock" in item
    }


def read_stock(dynamodb: DynamoDBClient, table: str, products: Iterable[str]) -> dict[str, int]:
    items = batch_get(dynamodb, table, [{"productId": {"S": pid}} for pid in sorted(set(products))])
    return {item["productId"]: int(item.get("stock", 0)) for item in items}


def top_up_stock(dynamodb: DynamoDBClient, table: str, top_ups: dict[str, int]) -> None:
    """Add the planned units to each product's stock."""
    for product_id, units in top_ups.items():
        dynamodb.update_item(
            TableName=table,
            Key={"productId": {"S": product_id}},
            UpdateExpression="ADD stock :units",
            ConditionExpression="attribute_exists(productId)",
            ExpressionAttributeValues={":units": {"N": str(units)}},
        )


class OnFailureQueue:
    """The outbox's on-failure queue as a run watches it: listed again only when its size changes.

    Listing reads each letter's records back from the stream, about 0.2 s of engine and client CPU
    with a few letters; its size is one cheap request. A listing also repeats every RELIST_AFTER
    seconds, in case a letter was swapped for another between two reads of the size.
    """

    def __init__(
        self,
        stack: LocalStack,
        region: str,
        list_letters: Callable[[], list[DeadLetter]] | None = None,
        sqs: SQSClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.queue_url = stack.outputs["OutboxFailureQueueUrl"]
        self.sqs: SQSClient = sqs or stack.client("sqs", region)
        self.list_letters = list_letters or (lambda: list_dead_letters(stack, region, DEAD_LETTERS_LISTED))
        self.clock = clock
        self.listings = 0
        self._size: int | None = None
        self._listed_at = 0.0
        self._letters: list[DeadLetter] = []

    def size(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=QUEUE_SIZE_ATTRIBUTES
        )
        return sum(int(attributes["Attributes"].get(name, 0)) for name in QUEUE_SIZE_ATTRIBUTES)

    def letters(self) -> list[DeadLetter]:
        """Every letter in the queue (listed again only if its size changed, or a while ago)."""
        size = self.size()
        if size != self._size or self.clock() - self._listed_at >= RELIST_AFTER:
            self._size, self._listed_at = size, self.clock()
            self._letters = self.list_letters()
            self.listings += 1
        return self._letters


@dataclass(frozen=True)
class TableSnapshot:
    """What the tables say about a run's orders once it is over (items keyed by order id)."""

    order_ids: tuple[str, ...]  # every order the API accepted
    orders: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    shipments: dict[str, dict[str, Any]]
    reservations: dict[str, dict[str, Any]] | None  # None: the stack has no reservations table
    stock_before: dict[str, int]
    top_ups: dict[str, int]
    stock_after: dict[str, int]
    poisoned: tuple[str, ...] = ()  # accepted orders whose outbox record is meant to be unreadable
    # The run's orders in the outbox's on-failure queue, once per letter naming them (letters of
    # other orders are left out); None: the stack has no on-failure queue.
    dead_lettered: tuple[str, ...] | None = ()


def read_snapshot(
    stack: LocalStack,
    region: str,
    order_ids: list[str],
    stock_before: dict[str, int],
    top_ups: dict[str, int],
    poisoned: Iterable[str] = (),
) -> TableSnapshot:
    """Read the run's orders, charges, shipments, reservations, stock and dead letters."""
    dynamodb: DynamoDBClient = stack.client("dynamodb", region)
    outputs = stack.outputs

    def by_order(output: str) -> dict[str, dict[str, Any]]:
        keys = [{"orderId": {"S": order_id}} for order_id in order_ids]
        return {item["orderId"]: item for item in batch_get(dynamodb, outputs[output], keys)}

    orders = batch_get(dynamodb, outputs["OrdersTableName"], [order_key(order_id) for order_id in order_ids])
    dead_lettered = None
    if "OutboxFailureQueueUrl" in outputs:
        ours = set(order_ids)
        letters = list_dead_letters(stack, region, DEAD_LETTERS_LISTED)
        dead_lettered = tuple(o for letter in letters for o in letter.order_ids if o in ours)
    return TableSnapshot(
        order_ids=tuple(order_ids),
        orders={item["orderId"]: item for item in orders},
        payments=by_order("PaymentsTableName"),
        shipments=by_order("ShipmentsTableName"),
        reservations=by_order("ReservationsTableName") if "ReservationsTableName" in outputs else None,
        stock_before=stock_before,
        top_ups=top_ups,
        stock_after=read_stock(dynamodb, outputs["InventoryTableName"], stock_before),
        poisoned=tuple(poisoned),
        dead_lettered=dead_lettered,
    )
