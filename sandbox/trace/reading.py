"""Reading the engine for a trace: the order's items, its saga histories, the functions' logs,
the audit queue, and which of the bus's rules match the order's events."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sandbox.errors import OrderError
from sandbox.items import plain_item
from sandbox.logs import LogLine, from_millis, function_names, read_lines
from sandbox.queues import list_messages
from sandbox.saga import execution_arn, executions_of
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.trace.execution_reading import debugger_holds
from sandbox.trace.model import AuditMessage, TraceSources, as_datetime

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import RuleTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef
    from mypy_boto3_stepfunctions import SFNClient

# Logs are read from a little before the order was written: the request that wrote it started earlier.
LOG_LEAD = timedelta(seconds=30)
AUDIT_PEEK_SECONDS = 30  # how long a peeked audit message stays hidden if the trace dies mid-read
AUDIT_PEEK_LIMIT = 10_000


class OrderNotFoundError(OrderError):
    """The engine has no record of the order."""


def read_order_items(
    dynamodb: DynamoDBClient, table: str, order_id: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The ORDER# item and its NOTIFICATION# items."""
    response = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ORDER#{order_id}"}},
        ConsistentRead=True,
    )
    items = [plain_item(item) for item in response.get("Items", [])]
    order = next((item for item in items if item.get("sk") == "ORDER"), None)
    notifications = [
        {"type": item["sk"].removeprefix("NOTIFICATION#"), "sentAt": item.get("sentAt")}
        for item in items
        if str(item.get("sk", "")).startswith("NOTIFICATION#")
    ]
    return order, notifications


def read_history(sfn: SFNClient, arn: str) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The execution's status and full history; (None, None) when it does not exist."""
    try:
        status = sfn.describe_execution(executionArn=arn)["status"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ExecutionDoesNotExist":
            return None, None
        raise
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(dict(event) for event in page["events"])
    return str(status), events


def peek_messages(
    sqs: SQSClient, queue_url: str, *, engine_url: str | None = None, limit: int = AUDIT_PEEK_LIMIT
) -> list[AuditMessage]:
    """Every message in the queue, left in it.

    On a local engine (``engine_url``) the engine's own listing reads them without receiving
    them. Elsewhere, or where the engine lists nothing, they are received: ``VisibilityTimeout=0``
    would only ever return the same first ten messages, so the batches are hidden while they are
    read and made visible again at once afterwards. Side effects of receiving: each message's
    receive count goes up by one, and a concurrent consumer would not see them for that moment
    (nothing consumes the audit queue in the sandbox).
    """
    listed = list_messages(engine_url, queue_url, sqs.meta.region_name) if engine_url else None
    received = listed[:limit] if listed is not None else _receive_and_release(sqs, queue_url, limit)
    messages = []
    for message in received:
        try:
            event = json.loads(message["Body"])
        except ValueError:
            continue
        sent = int((message.get("Attributes") or {}).get("SentTimestamp", 0))
        if isinstance(event, dict):
            messages.append(AuditMessage(event, from_millis(sent)))
    return messages


def _receive_and_release(sqs: SQSClient, queue_url: str, limit: int) -> list[dict[str, Any]]:
    """Receive the queue's messages in hidden batches, then make them all visible again."""
    received: list[MessageTypeDef] = []
    try:
        while len(received) < limit:
            batch = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=AUDIT_PEEK_SECONDS,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            if not batch:
                break
            received.extend(batch)
    finally:
        for start in range(0, len(received), 10):
            chunk = received[start : start + 10]
            sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                    for index, message in enumerate(chunk)
                ],
            )
    return [dict(message) for message in received]


def _resource_label(arn: str, functions: dict[str, str]) -> str:
    """A rule target as people name it: the function's short name, or the queue's name."""
    name = arn.rsplit(":", 1)[-1]
    short = {physical: service for service, physical in functions.items()}
    if ":function:" in arn:
        return f"{short.get(name, name)} function"
    if ":sqs:" in arn:
        return f"{name} queue"
    return name


def _rule_label(rule_name: str, stack_name: str) -> str:
    """``saga-sandbox-AuditRule-6B961D5A73579`` -> ``AuditRule``."""
    match = re.match(rf"^{re.escape(stack_name)}-(.+)-[A-Z0-9]{{8,}}$", rule_name)
    return match.group(1) if match else rule_name


def match_rules(
    events_client: EventBridgeClient,
    bus: str,
    stack_name: str,
    samples: dict[str, dict[str, Any]],
    functions: dict[str, str],
) -> dict[str, list[str]]:
    """For one sample event per detail-type: the bus's rules that match it, with their targets."""
    rules: list[RuleTypeDef] = []
    for page in events_client.get_paginator("list_rules").paginate(EventBusName=bus):
        rules.extend(rule for rule in page["Rules"] if rule.get("EventPattern"))
    targets = {
        rule["Name"]: [
            _resource_label(target["Arn"], functions)
            for target in events_client.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        ]
        for rule in rules
    }
    matches: dict[str, list[str]] = {}
    for detail_type, event in samples.items():
        matched = []
        for rule in rules:
            result = events_client.test_event_pattern(
                EventPattern=rule["EventPattern"], Event=json.dumps(event)
            )
            if result.get("Result"):
                label = _rule_label(rule["Name"], stack_name)
                matched.append(f"{label} → {', '.join(targets[rule['Name']]) or 'no target'}")
        matches[detail_type] = matched
    return matches


def read_replays(stack: LocalStack, region: str, order_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(name, history) of each operator replay of the order's saga (named after the order, suffixed)."""
    sfn: SFNClient = stack.client("stepfunctions", region)
    replays = []
    for execution in executions_of(stack, region, order_id):
        if execution["name"] != order_id:
            _status, history = read_history(sfn, execution["executionArn"])
            replays.append((execution["name"], history or []))
    return replays


def read_order_logs(
    stack: LocalStack, region: str, functions: dict[str, str], order: dict[str, Any] | None
) -> list[LogLine]:
    """Every function's log lines since a little before the order was written."""
    since = as_datetime(order["createdAt"]) - LOG_LEAD if order else None
    start_ms = int(since.timestamp() * 1000) if since else None
    # Unfiltered: a refused replay of the order's Idempotency-Key does not name the order.
    return read_lines(stack.client("logs", region), functions, start_ms=start_ms)


def collect_sources(stack: LocalStack, settings: Settings, order_id: str) -> TraceSources:
    """Read everything the engine recorded about the order."""
    region = settings.region
    outputs = stack.outputs
    order, notifications = read_order_items(
        stack.client("dynamodb", region), outputs["OrdersTableName"], order_id
    )
    saga_status, history = read_history(
        stack.client("stepfunctions", region), execution_arn(outputs["StateMachineArn"], order_id)
    )
    if order is None and history is None:
        raise OrderNotFoundError(
            f"order {order_id} not found: no ORDER# item in {outputs['OrdersTableName']} and no saga execution",
            hint="list recent orders with `sandbox orders`",
        )
    sources = TraceSources(order_id, order, notifications, history, saga_status)
    sources.replays = read_replays(stack, region, order_id)
    functions = function_names(
        stack.client("cloudformation", region), stack.client("lambda", region), settings.stack_name
    )
    sources.log_lines = read_order_logs(stack, region, functions, order)
    sources.injections = record_injections(stack, order_id)
    sources.holds = debugger_holds(stack, order_id)  # the saga's execution is named after the order
    audit = peek_messages(
        stack.client("sqs", region), outputs["AuditQueueUrl"], engine_url=stack.engine.endpoint_url
    )
    sources.audit_messages = [
        message for message in audit if (message.event.get("detail") or {}).get("orderId") == order_id
    ]
    samples = {str(message.event.get("detail-type")): message.event for message in sources.audit_messages}
    sources.rule_matches = match_rules(
        stack.client("events", region), outputs["EventBusName"], settings.stack_name, samples, functions
    )
    return sources


def record_injections(stack: LocalStack, order_id: str) -> list[dict[str, Any]]:
    """The faults the engine injected into deliveries of the order's outbox record (none without the hook)."""
    from sandbox.faults import FaultsUnsupportedError, fault_book

    try:
        made = fault_book(stack).injections()
    except FaultsUnsupportedError:
        return []
    record = f"OUTBOX#{order_id}"
    return [entry for entry in made if any(record in keys for keys in entry.get("records") or [])]
