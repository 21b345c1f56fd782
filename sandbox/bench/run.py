"""A run: plan, top up stock, place the orders from concurrent clients, wait for their end, check."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sandbox.bench.calls import CallCounts, observed, read_call_counts
from sandbox.bench.plan import BenchConfig, BenchPlan, PlannedOrder, plan_orders
from sandbox.bench.report import BenchReport, Load
from sandbox.bench.resources import ResourceSampler, ResourceUsage
from sandbox.bench.tables import OnFailureQueue, read_catalog, read_snapshot, top_up_stock
from sandbox.bench.verdict import check_invariants
from sandbox.bench.watch import (
    POLL_INTERVAL,
    POLL_MAX_INTERVAL,
    ApiAnswer,
    BenchProgress,
    OrderOutcome,
    OrderWatcher,
)
from sandbox.demo_faults import OrderFaults, order_id_for_key
from sandbox.errors import OrderError, SandboxError, UsageError, WaitTimeoutError
from sandbox.orders import OrdersClient
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Progress = Callable[[BenchProgress], None]


def _post(client: OrdersClient, payload: dict[str, Any], key: str) -> ApiAnswer:
    """One POST /orders, as the run records it (an unreachable API is an answer too)."""
    try:
        response = client.post_order(payload, key)
    except OrderError as error:
        return ApiAnswer(None, None, str(error))
    if response.status == 201 and isinstance(response.body, dict) and "orderId" in response.body:
        return ApiAnswer(201, str(response.body["orderId"]))
    message = response.body.get("message") if isinstance(response.body, dict) else response.body
    return ApiAnswer(response.status, None, f"HTTP {response.status}: {message}")


def _place(
    client: OrdersClient,
    outcome: OrderOutcome,
    customer_id: str,
    idempotency_key: str,
    watcher: OrderWatcher,
    stop: threading.Event,
    not_before: float,
) -> None:
    """POST one order (at its paced time), and again if planned; record whether the API accepted it."""
    delay = not_before - time.monotonic()
    if delay > 0 and stop.wait(delay):  # pacing for --rate; interrupted when the run is aborted
        return
    if stop.is_set():
        return
    payload = outcome.planned.payload(customer_id)
    outcome.sent_at = time.time()
    if outcome.planned.duplicate == "concurrent":
        # The same request twice at once: one is answered, the other finds it in flight (409) or replayed.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-duplicate") as twin:
            other = twin.submit(_post, client, payload, idempotency_key)
            first = _post(client, payload, idempotency_key)
            second = other.result()
        answer, echo = (second, first) if first.order_id is None and second.order_id else (first, second)
        outcome.duplicate_answers.append(echo)
    else:
        answer = _post(client, payload, idempotency_key)
        if outcome.planned.duplicate == "after":
            outcome.duplicate_answers.append(_post(client, payload, idempotency_key))
    if answer.order_id is None:
        outcome.refusal = answer.refusal
        return
    outcome.accepted_at = time.time()
    outcome.order_id = answer.order_id
    watcher.add(outcome)


def run_load(
    stack: LocalStack,
    region: str,
    plan: BenchPlan,
    *,
    identity: Callable[[PlannedOrder], tuple[str, str]],
    concurrency: int,
    rate: float | None = None,
    wait_seconds: float = 120,
    on_progress: Progress = lambda _: None,
    then: Callable[[tuple[OrderOutcome, ...]], None] = lambda _: None,
) -> Load:
    """Top up stock, place the plan's orders from concurrent clients, and wait until all are terminal.

    ``identity`` names each order's customer and idempotency key. ``then`` runs once every order
    is terminal, while the engine's cost is still being measured.
    """
    observer = observed(stack)  # the run's own calls are counted apart from the orders'
    dynamodb: DynamoDBClient = observer.client("dynamodb", region)
    count = len(plan.orders)
    is_poisoning = any(order.is_poisoned for order in plan.orders)
    if is_poisoning and "OutboxFailureQueueUrl" not in stack.outputs:
        raise UsageError(
            "the run poisons outbox records, and the stack has no on-failure queue "
            "(no OutboxFailureQueueUrl output)",
            hint="`sandbox up` deploys the current template",
        )
    top_up_stock(dynamodb, stack.outputs["InventoryTableName"], plan.top_ups)
    outcomes = tuple(OrderOutcome(order) for order in plan.orders)
    watcher = OrderWatcher(
        dynamodb,
        stack.outputs["OrdersTableName"],
        read_dead_letters=OnFailureQueue(observer, region).letters if is_poisoning else lambda: (),
    )
    client = OrdersClient(stack.api_url)
    sampler = ResourceSampler(stack.engine.pid) if stack.engine.pid is not None else None
    note = None if sampler else f"not measured: the {stack.engine.engine} engine runs in a container"
    stop = threading.Event()
    placements: list[Future[None]] = []

    def progress(stage: str) -> None:
        accepted = sum(1 for o in outcomes if o.order_id is not None)
        refused = sum(1 for o in outcomes if o.refusal is not None)
        on_progress(BenchProgress(stage, len(outcomes), accepted, refused, watcher.terminal))

    def is_placed() -> bool:
        watcher.poll()
        progress("placing")
        return all(future.done() for future in placements)

    def is_finished() -> bool:
        left = watcher.poll()
        progress("finishing")
        return left == 0

    # The planned faults, as rules scoped to each order (named after its key), set before any is placed.
    order_faults = OrderFaults(observer, region)
    rules = order_faults.add(
        (order_id_for_key(identity(order)[1]), order.faults) for order in plan.orders if order.faults
    )
    calls_before = read_call_counts(stack.engine.endpoint_url)
    calls: CallCounts | None = None
    if sampler:
        sampler.start()
    started = time.time()
    resources: ResourceUsage | None = None
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-client") as pool:
            origin = time.monotonic()
            for outcome in outcomes:
                not_before = origin + outcome.planned.index / rate if rate else origin
                customer_id, key = identity(outcome.planned)
                placements.append(
                    pool.submit(_place, client, outcome, customer_id, key, watcher, stop, not_before)
                )
            try:
                # Every POST has its own HTTP timeout, so placing always ends; this bound is a backstop.
                pace = count / rate if rate else 0
                wait_until(
                    is_placed,
                    timeout=pace + 60 + 30 * math.ceil(count / concurrency),
                    what=f"{count} orders to be placed",
                    interval=POLL_INTERVAL,
                    max_interval=POLL_MAX_INTERVAL,
                )
            finally:
                stop.set()
        for future in placements:
            future.result()  # a bug in a client thread surfaces here
        placed = max((o.accepted_at or o.sent_at or started for o in outcomes), default=started)
        if not any(o.order_id for o in outcomes):
            first = next((o.refusal for o in outcomes if o.refusal), "no answer")
            raise OrderError(f"the order API accepted none of {len(outcomes)} orders: {first}")
        try:
            wait_until(
                is_finished,
                timeout=wait_seconds,
                interval=POLL_INTERVAL,
                max_interval=POLL_MAX_INTERVAL,
                what=f"every accepted order ({sum(1 for o in outcomes if o.order_id)}) "
                "to reach COMPLETED or FAILED in the orders table"
                + (" (a poisoned one: the on-failure queue)" if is_poisoning else ""),
            )
        except WaitTimeoutError as error:
            pending = watcher.pending
            raise WaitTimeoutError(
                f"{error} ({len(pending)} still PENDING)",
                hint=f"`sandbox trace {pending[0]}` shows where one stopped; "
                + ("`sandbox dlq` lists the on-failure queue; " if is_poisoning else "")
                + "a larger --wait-seconds gives a slow engine more time"
                if pending
                else None,
            ) from error
        finished = max((o.finished_at or 0 for o in outcomes), default=time.time())
        calls_after = read_call_counts(stack.engine.endpoint_url) if calls_before else None
        calls = calls_after.since(calls_before) if calls_after and calls_before else None
        then(outcomes)
    finally:
        stop.set()
        order_faults.clear(rules)
        if sampler:
            try:
                resources = sampler.stop()
            except SandboxError as error:  # never hide the error that ended the run
                note = str(error)
    return Load(outcomes, started, placed, max(finished, placed), resources, note, calls)


def run_bench(
    stack: LocalStack,
    region: str,
    config: BenchConfig,
    on_progress: Progress = lambda _: None,
) -> BenchReport:
    """Plan, top up stock, place the orders, wait until all are terminal, measure, and check the tables."""
    config.validate()
    dynamodb: DynamoDBClient = stack.client("dynamodb", region)
    run_id = uuid.uuid4().hex[:8]
    customer_id = f"bench-{run_id}"
    on_progress(BenchProgress("planning", config.orders))
    plan = plan_orders(read_catalog(dynamodb, stack.outputs["InventoryTableName"]), config.orders, config.mix,
                       config.seed)  # fmt: skip
    load = run_load(
        stack,
        region,
        plan,
        identity=lambda order: (customer_id, f"{customer_id}-{order.index}"),
        concurrency=config.concurrency,
        rate=config.rate,
        wait_seconds=config.wait_seconds,
        on_progress=on_progress,
    )
    terminal = sum(1 for o in load.outcomes if o.is_terminal)
    on_progress(BenchProgress("checking", len(load.outcomes), terminal, 0, terminal))
    accepted_ids = [str(o.order_id) for o in load.outcomes if o.order_id]
    poisoned = [str(o.order_id) for o in load.outcomes if o.order_id and o.planned.is_poisoned]
    snapshot = read_snapshot(stack, region, accepted_ids, plan.stock, plan.top_ups, poisoned)
    return BenchReport(config, run_id, customer_id, plan, load, check_invariants(snapshot))
