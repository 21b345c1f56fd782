"""What the system itself recorded about a run's orders: tables, saga executions and histories, queues.

Nothing here knows what the run meant to happen; the checker judges these records alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from sandbox.bench import TableSnapshot, batch_get, read_snapshot
from sandbox.items import plain_item
from sandbox.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient

# How an operator's replay of a saga is named (sandbox.saga.replay_saga): "<order id>-replay-<ms>".
REPLAY_MARK = "-replay-"
# The names executions get from the publisher (the order id) and from a replay; any other name is
# read from its input to learn which order it ran for.
KNOWN_NAME = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}(-replay-\d+)?$")
HISTORY_READERS = 4  # histories read at once


@dataclass(frozen=True)
class StepRecord:
    """One Task state an execution entered: whether it succeeded, else the error it ended with."""

    name: str
    is_succeeded: bool
    error: str | None = None


@dataclass(frozen=True)
class SagaExecution:
    """One execution of the saga for an order, with its states when its history was read."""

    name: str
    order_id: str
    status: str
    steps: tuple[StepRecord, ...] | None = None  # None: not read (only FAILED executions' are)

    @property
    def is_own(self) -> bool:
        """Started by the publisher: named after the order."""
        return self.name == self.order_id

    @property
    def is_replay(self) -> bool:
        """Started again by an operator, on purpose."""
        return self.name.startswith(f"{self.order_id}{REPLAY_MARK}")


@dataclass(frozen=True)
class ChaosRecords:
    """Everything the checker reads about a run's accepted orders."""

    tables: TableSnapshot  # orders, charges, shipments, reservations, stock, dead letters
    executions: dict[str, tuple[SagaExecution, ...]]  # order id -> every execution that ran for it
    outbox: frozenset[str]  # orders whose OUTBOX# record exists
    # The run's customers (by prefix) -> the orders, charges and shipments recorded for each;
    # None: the run's customers are not known, so these are not read.
    customer_orders: dict[str, tuple[str, ...]] | None = None
    customer_charges: dict[str, tuple[str, ...]] | None = None
    customer_shipments: dict[str, tuple[str, ...]] | None = None
    is_stock_known: bool = True  # the stock before the run was given
    # The faults each order was given (rules at the invoke boundary: the order item does not say).
    faults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def faults_of(self, order_id: str) -> Mapping[str, Any]:
        return self.faults.get(order_id) or {}


def steps_of(history: Iterable[Mapping[str, Any]]) -> tuple[StepRecord, ...]:
    """Every Task state an execution entered, in order, from its history events."""
    steps: list[StepRecord] = []
    current: StepRecord | None = None
    for event in sorted(history, key=lambda item: int(item["id"])):
        kind = event["type"]
        if kind == "TaskStateEntered":
            current = StepRecord(event["stateEnteredEventDetails"]["name"], False)
        elif current is None:
            continue
        elif kind in ("TaskFailed", "TaskTimedOut"):
            details = event.get("taskFailedEventDetails") or event.get("taskTimedOutEventDetails") or {}
            current = replace(current, error=str(details.get("error") or kind))
        elif kind == "TaskSucceeded":
            current = replace(current, is_succeeded=True, error=None)
        elif kind == "TaskStateExited" or kind.startswith("Execution"):
            steps.append(current)
            current = None
    return tuple(steps)


def _order_of(sfn: SFNClient, execution_arn: str) -> str | None:
    """The order an execution ran for, from its input."""
    try:
        document = json.loads(sfn.describe_execution(executionArn=execution_arn).get("input") or "{}")
    except ValueError:
        return None
    order = document.get("order") if isinstance(document, dict) else None
    return str(order["orderId"]) if isinstance(order, dict) and "orderId" in order else None


def _history(sfn: SFNClient, execution_arn: str) -> tuple[StepRecord, ...]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events += [dict(event) for event in page["events"]]
    return steps_of(events)


def _listed(sfn: SFNClient, state_machine_arn: str) -> Iterator[dict[str, Any]]:
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        yield from (dict(execution) for execution in page["executions"])


def count_running(stack: LocalStack, region: str, order_ids: Iterable[str]) -> int:
    """How many executions named after these orders (or replaying them) are still running."""
    sfn: SFNClient = stack.client("stepfunctions", region)
    ours = set(order_ids)
    return sum(
        1
        for listed in _listed(sfn, stack.outputs["StateMachineArn"])
        if listed["status"] == "RUNNING" and listed["name"].split(REPLAY_MARK)[0] in ours
    )


def read_executions(
    stack: LocalStack, region: str, order_ids: Iterable[str], since: datetime | None = None
) -> dict[str, tuple[SagaExecution, ...]]:
    """Every execution of the saga that ran for these orders, with the histories of the FAILED ones.

    An execution is the order's by its name (the order id, or a replay of it); one named otherwise
    and started ``since`` is the order's by its input.
    """
    sfn: SFNClient = stack.client("stepfunctions", region)
    ours = set(order_ids)
    found: list[tuple[dict[str, Any], str]] = []
    for listed in _listed(sfn, stack.outputs["StateMachineArn"]):
        name = listed["name"]
        if KNOWN_NAME.match(name):
            owner: str | None = name.split(REPLAY_MARK)[0]
        elif since is None or listed["startDate"] >= since:
            owner = _order_of(sfn, listed["executionArn"])
        else:
            continue
        if owner in ours:
            found.append((listed, str(owner)))
    failed = [execution["executionArn"] for execution, _ in found if execution["status"] == "FAILED"]
    with ThreadPoolExecutor(max_workers=HISTORY_READERS, thread_name_prefix="chaos-history") as pool:
        histories = dict(zip(failed, pool.map(lambda arn: _history(sfn, arn), failed), strict=True))
    executions: dict[str, list[SagaExecution]] = {}
    for execution, order_id in found:
        executions.setdefault(order_id, []).append(
            SagaExecution(
                execution["name"], order_id, execution["status"], histories.get(execution["executionArn"])
            )
        )
    return {order_id: tuple(found_for) for order_id, found_for in executions.items()}


def _by_customer(
    dynamodb: DynamoDBClient, table: str, prefix: str, *, is_orders_table: bool = False
) -> dict[str, tuple[str, ...]]:
    """Customer -> the order ids of the table's items whose customer id starts with ``prefix``."""
    condition = "begins_with(customerId, :prefix)"
    values: dict[str, Any] = {":prefix": {"S": prefix}}
    if is_orders_table:  # its ORDER# items only (OUTBOX# records carry the customer in their payload)
        condition += " AND sk = :order"
        values[":order"] = {"S": "ORDER"}
    found: dict[str, list[str]] = {}
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression=condition,
        ProjectionExpression="orderId, customerId",
        ExpressionAttributeValues=values,
        ConsistentRead=True,
    ):
        for raw in page.get("Items", []):
            item = plain_item(dict(raw))
            found.setdefault(str(item["customerId"]), []).append(str(item["orderId"]))
    return {customer: tuple(sorted(ids)) for customer, ids in found.items()}


class RunBaseline(TypedDict, total=False):
    """What the checker needs to know of a run besides its order ids; each part is optional.

    ``stock_before`` is the inventory as read before the run (and ``top_ups`` what the run added
    then): without it stock is not checked. ``faults`` holds each order's faults by order id (rules
    at the invoke boundary leave no trace in the order). ``customer_prefix`` names the run's customers (one per
    request): with it the tables are scanned for every order, charge and shipment of theirs.
    """

    stock_before: Mapping[str, int] | None
    top_ups: Mapping[str, int] | None
    customer_prefix: str | None
    faults: Mapping[str, Mapping[str, Any]] | None


def read_records(
    stack: LocalStack, region: str, order_ids: Iterable[str], **baseline: Unpack[RunBaseline]
) -> ChaosRecords:
    """Read what the system recorded about these accepted orders (see RunBaseline)."""
    stock_before, top_ups = baseline.get("stock_before"), baseline.get("top_ups")
    customer_prefix = baseline.get("customer_prefix")
    faults = dict(baseline.get("faults") or {})
    ids = list(dict.fromkeys(order_ids))
    dynamodb: DynamoDBClient = stack.client("dynamodb", region)
    outputs = stack.outputs
    tables = read_snapshot(stack, region, ids, dict(stock_before or {}), dict(top_ups or {}))
    poisoned = tuple(order_id for order_id in ids if (faults.get(order_id) or {}).get("poison"))
    tables = replace(tables, poisoned=poisoned)
    outbox = batch_get(
        dynamodb,
        outputs["OrdersTableName"],
        [{"pk": {"S": f"OUTBOX#{order_id}"}, "sk": {"S": "OUTBOX"}} for order_id in ids],
        projection="orderId",
    )
    created = [
        datetime.fromisoformat(str(item["createdAt"]))
        for item in tables.orders.values()
        if "createdAt" in item
    ]
    customers: dict[str, dict[str, tuple[str, ...]] | None] = {
        "orders": None,
        "charges": None,
        "shipments": None,
    }
    if customer_prefix:
        for name, output in (("orders", "OrdersTableName"), ("charges", "PaymentsTableName"),
                             ("shipments", "ShipmentsTableName")):  # fmt: skip
            customers[name] = _by_customer(dynamodb, outputs[output], customer_prefix,
                                           is_orders_table=name == "orders")  # fmt: skip
    return ChaosRecords(
        tables=tables,
        executions=read_executions(stack, region, ids, since=min(created, default=None)),
        outbox=frozenset(str(item["orderId"]) for item in outbox),
        customer_orders=customers["orders"],
        customer_charges=customers["charges"],
        customer_shipments=customers["shipments"],
        is_stock_known=stock_before is not None,
        faults=faults,
    )
