"""The outbox's on-failure queue: what the publisher gave up on, and sending it back.

A stream mapping's on-failure record names a range of stream records, not their data; the
records are read back from the stream, and only the outbox inserts among them count (the range
also spans the order updates the mapping's filter skips). Redrive repairs each outbox record from
its order (the order item is the source of truth, the outbox payload is derived from it) and hands
the publisher only the records whose saga has not started, so running it twice resends nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.errors import SandboxError
from sandbox.items import plain_item
from sandbox.queues import list_messages
from sandbox.saga import execution_arn
from sandbox.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient


@dataclass(frozen=True)
class DeadLetter:
    """One on-failure record: why the batch failed and the outbox records it holds."""

    message_id: str
    condition: str
    function_error: str
    failed_at: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def order_ids(self) -> list[str]:
        return list(dict.fromkeys(order_id_of(record) for record in self.records))

    def as_dict(self) -> dict[str, Any]:
        return {"messageId": self.message_id, "condition": self.condition, "functionError": self.function_error,
                "failedAt": self.failed_at, "orderIds": self.order_ids}  # fmt: skip


def order_id_of(record: dict[str, Any]) -> str:
    return str(record["dynamodb"].get("NewImage", {}).get("orderId", {}).get("S", "?"))


def is_outbox_insert(record: dict[str, Any]) -> bool:
    """What the stream mapping's filter lets through: a new OUTBOX# item."""
    key = record["dynamodb"].get("Keys", {}).get("pk", {}).get("S", "")
    return bool(record.get("eventName") == "INSERT" and key.startswith("OUTBOX#"))


def read_stream_records(
    streams: DynamoDBStreamsClient, stream_arn: str, first: str, last: str
) -> list[dict[str, Any]]:
    """The stream records from sequence number ``first`` to ``last`` (inclusive)."""
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    found: list[dict[str, Any]] = []
    for shard in shards:
        try:
            iterator = streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=first,
            )["ShardIterator"]  # fmt: skip
        except streams.exceptions.ClientError:
            continue
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=100)
            for record in page["Records"]:
                if int(record["dynamodb"]["SequenceNumber"]) > int(last):
                    return found
                found.append(dict(record))
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return found


def list_dead_letters(stack: LocalStack, region: str, max_messages: int = 100) -> list[DeadLetter]:
    """Every message in the outbox's on-failure queue, left in it as it was.

    Read through the engine's own listing, which neither raises receive counts nor hides the
    messages; an engine without one is received from with ``VisibilityTimeout=0``.
    """
    sqs: SQSClient = stack.client("sqs", region)
    streams: DynamoDBStreamsClient = stack.client("dynamodbstreams", region)
    queue_url = stack.outputs["OutboxFailureQueueUrl"]
    listed = list_messages(stack.engine.endpoint_url, queue_url, region)
    messages = listed[:max_messages] if listed is not None else _receive_visible(sqs, queue_url, max_messages)
    letters = []
    for message in messages:
        body = json.loads(message["Body"])
        batch = body.get("DDBStreamBatchInfo", {})
        records = read_stream_records(
            streams, batch["streamArn"], batch["startSequenceNumber"], batch["endSequenceNumber"]
        )
        letters.append(
            DeadLetter(
                message_id=message["MessageId"],
                condition=body.get("requestContext", {}).get("condition", "?"),
                function_error=body.get("responseContext", {}).get("functionError", "?"),
                failed_at=body.get("timestamp", "?"),
                records=[record for record in records if is_outbox_insert(record)],
            )
        )
    return letters


def _receive_visible(sqs: SQSClient, queue_url: str, max_messages: int) -> list[dict[str, Any]]:
    """The queue's messages, received without hiding them (each receive counts, though)."""
    found: dict[str, dict[str, Any]] = {}
    while len(found) < max_messages:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
        ).get("Messages", [])
        new = [message for message in messages if message["MessageId"] not in found]
        if not new:
            break
        found.update((message["MessageId"], dict(message)) for message in new)
    return list(found.values())


def repair_record(record: dict[str, Any], dynamodb: DynamoDBClient, orders_table: str) -> dict[str, Any]:
    """The stream record with its outbox payload rebuilt from the order item."""
    image = record["dynamodb"].get("NewImage", {})
    order_id = image.get("orderId", {}).get("S")
    if not order_id:
        return record
    item = dynamodb.get_item(TableName=orders_table, Key={"pk": {"S": f"ORDER#{order_id}"}, "sk": {"S": "ORDER"}},
                             ConsistentRead=True).get("Item")  # fmt: skip
    if item is None:
        raise SandboxError(f"order {order_id} of a dead-lettered outbox record no longer exists")
    order = {key: value for key, value in plain_item(item).items() if key not in ("pk", "sk")}
    faults = {key: value for key, value in (order.get("faults") or {}).items() if key != "poison"}
    order["faults"] = faults
    repaired = json.loads(json.dumps(record, default=str))
    repaired["dynamodb"]["NewImage"]["payload"] = {"S": json.dumps(order)}
    return dict(repaired)


def delete_message(sqs: SQSClient, queue_url: str, message_id: str) -> bool:
    """Delete one message by id (a peek's receipt handle is not good for deleting)."""
    for _ in range(10):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
            "Messages", []
        )
        if not messages:
            return False
        is_deleted = False
        for message in messages:
            if message["MessageId"] == message_id:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                is_deleted = True
            else:  # not ours: make it visible again at once
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        if is_deleted:
            return True
    return False


def has_saga(sfn: SFNClient, state_machine_arn: str, order_id: str) -> bool:
    """Whether the order's record was published: its saga (named after the order) exists."""
    try:
        sfn.describe_execution(executionArn=execution_arn(state_machine_arn, order_id))
    except sfn.exceptions.ExecutionDoesNotExist:
        return False
    return True


def redrive(stack: LocalStack, region: str, publisher_name: str) -> list[dict[str, Any]]:
    """Send each dead letter's unpublished outbox records back to the publisher; delete what is done.

    A record whose saga already exists is not sent again (a redrive that ran before, or the
    record was published after all); a letter is deleted once none of its records is left.
    """
    sqs: SQSClient = stack.client("sqs", region)
    sfn: SFNClient = stack.client("stepfunctions", region)
    lambda_client: LambdaClient = stack.client("lambda", region)
    dynamodb: DynamoDBClient = stack.client("dynamodb", region)
    results = []
    for letter in list_dead_letters(stack, region):
        unpublished = [
            record
            for record in letter.records
            if not has_saga(sfn, stack.outputs["StateMachineArn"], order_id_of(record))
        ]
        error = None
        if unpublished:
            records = [
                repair_record(record, dynamodb, stack.outputs["OrdersTableName"]) for record in unpublished
            ]
            response = lambda_client.invoke(
                FunctionName=publisher_name, Payload=json.dumps({"Records": records})
            )
            payload = json.loads(response["Payload"].read() or b"{}")
            if "FunctionError" in response or (payload or {}).get("batchItemFailures"):
                error = json.dumps(payload)[:300]
        if error is None:
            delete_message(sqs, stack.outputs["OutboxFailureQueueUrl"], letter.message_id)
        resent = [order_id_of(record) for record in unpublished]
        results.append({**letter.as_dict(), "redriven": error is None, "resent": resent,
                        "alreadyPublished": [o for o in letter.order_ids if o not in resent], "error": error})  # fmt: skip
    return results
