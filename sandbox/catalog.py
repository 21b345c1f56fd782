"""The demo catalog seeded into the inventory table on `sandbox up`."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEMO_PRODUCTS: dict[str, dict[str, Any]] = {
    "espresso-beans": {"name": "Espresso beans, 1 kg", "price": Decimal("24.50"), "stock": 100},
    "grinder": {"name": "Burr grinder", "price": Decimal("129.00"), "stock": 20},
    "kettle": {"name": "Gooseneck kettle", "price": Decimal("59.90"), "stock": 30},
    "mug": {"name": "Stoneware mug", "price": Decimal("12.00"), "stock": 200},
    "espresso-machine": {"name": "Dual-boiler espresso machine", "price": Decimal("2499.00"), "stock": 5},
}


def seed_inventory(dynamodb: DynamoDBClient, table: str) -> int:
    """Put the demo products that are missing (existing stock is left alone); return how many."""
    added = 0
    for product_id, product in DEMO_PRODUCTS.items():
        try:
            dynamodb.put_item(
                TableName=table,
                Item={
                    "productId": {"S": product_id},
                    "name": {"S": product["name"]},
                    "price": {"N": str(product["price"])},
                    "stock": {"N": str(product["stock"])},
                },
                ConditionExpression="attribute_not_exists(productId)",
            )
            added += 1
        except dynamodb.exceptions.ConditionalCheckFailedException:
            continue
    return added
