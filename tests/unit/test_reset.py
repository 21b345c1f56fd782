"""Emptying a table for `sandbox reset`: every item deleted, unprocessed deletes sent again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from sandbox.stack import _delete_all_items

TABLE = "saga-sandbox-orders"


@pytest.fixture
def dynamodb(client_factory: Any) -> Iterator[Any]:
    client = client_factory("dynamodb")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def key(number: int) -> dict[str, Any]:
    return {"pk": {"S": f"ORDER#{number}"}, "sk": {"S": "ORDER"}}


def deletes(numbers: list[int]) -> dict[str, Any]:
    return {TABLE: [{"DeleteRequest": {"Key": key(number)}} for number in numbers]}


def test_every_item_is_deleted_in_batches_and_unprocessed_deletes_are_sent_again(dynamodb: Any) -> None:
    # GIVEN a table of 30 items over two scan pages
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    dynamodb.stubber.add_response(
        "describe_table", {"Table": {"TableName": TABLE, "KeySchema": schema}}, {"TableName": TABLE}
    )
    scan = {
        "TableName": TABLE,
        "ProjectionExpression": "#k0, #k1",
        "ExpressionAttributeNames": {"#k0": "pk", "#k1": "sk"},
    }
    dynamodb.stubber.add_response(
        "scan", {"Items": [key(n) for n in range(20)], "LastEvaluatedKey": key(19)}, scan
    )
    dynamodb.stubber.add_response(
        "scan", {"Items": [key(n) for n in range(20, 30)]}, {**scan, "ExclusiveStartKey": key(19)}
    )
    # AND DynamoDB leaving two deletes of the first batch unprocessed
    dynamodb.stubber.add_response(
        "batch_write_item", {"UnprocessedItems": deletes([3, 7])}, {"RequestItems": deletes(list(range(25)))}
    )
    dynamodb.stubber.add_response(
        "batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": deletes([3, 7, *range(25, 30)])}
    )
    # WHEN the table is emptied THEN all 30 are deleted, the two left over sent again
    assert _delete_all_items(dynamodb, TABLE) == 30


def test_an_empty_table_sends_no_deletes(dynamodb: Any) -> None:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    dynamodb.stubber.add_response("describe_table", {"Table": {"KeySchema": schema}}, {"TableName": TABLE})
    dynamodb.stubber.add_response("scan", {"Items": []})
    assert _delete_all_items(dynamodb, TABLE) == 0
