"""A run: plan, top up stock, place the orders from concurrent clients, wait for their end, check."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from sandbox.bench.plan import BenchConfig, plan_orders
from sandbox.bench.report import BenchReport
from sandbox.bench.resources import ResourceSampler, ResourceUsage
from sandbox.bench.tables import OnFailureQueue, read_catalog, read_snapshot, top_up_stock
from sandbox.bench.verdict import check_invariants
from sandbox.bench.watch import POLL_INTERVAL, POLL_MAX_INTERVAL, BenchProgress, OrderOutcome, OrderWatcher
from sandbox.errors import OrderError, SandboxError, UsageError, WaitTimeoutError
from sandbox.orders import OrdersClient
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Progress = Callable[[BenchProgress], None]


def _place(
    client: OrdersClient,
    outcome: OrderOutcome,
    customer_id: str,
    idempotency_key: str,
    watcher: OrderWatcher,
    stop: threading.Event,
    not_before: float,
) -> None:
    """POST one order (at its paced time); record whether the API accepted it."""
    delay = not_before - time.monotonic()
    if delay > 0 and stop.wait(delay):  # pacing for --rate; interrupted when the run is aborted
        return
    if stop.is_set():
        return
    outcome.sent_at = time.time()
    try:
        response = client.post_order(outcome.planned.payload(customer_id), idempotency_key)
    except OrderError as error:
        outcome.refusal = str(error)
        return
    if response.status == 201 and isinstance(response.body, dict) and "orderId" in response.body:
        outcome.accepted_at = time.time()
        outcome.order_id = str(response.body["orderId"])
        watcher.add(outcome)
    else:
        message = response.body.get("message") if isinstance(response.body, dict) else response.body
        outcome.refusal = f"HTTP {response.status}: {message}"


def run_bench(
    stack: LocalStack,
    region: str,
    config: BenchConfig,
    on_progress: Progress = lambda _: None,
) -> BenchReport:
    """Plan, top up stock, place the orders, wait until all are terminal, measure, and check the tables."""
    config.validate()
    dynamodb: DynamoDBClient = stack.client("dynamodb", region)
    inventory = stack.outputs["InventoryTableName"]
    run_id = uuid.uuid4().hex[:8]
    customer_id = f"bench-{run_id}"
    on_progress(BenchProgress("planning", config.orders))
    plan = plan_orders(read_catalog(dynamodb, inventory), config.orders, config.mix, config.seed)
    is_poisoning = any(order.is_poisoned for order in plan.orders)
    if is_poisoning and "OutboxFailureQueueUrl" not in stack.outputs:
        raise UsageError(
            f"--mix {config.mix} poisons outbox records, and the stack has no on-failure queue "
            "(no OutboxFailureQueueUrl output)",
            hint="`sandbox up` deploys the current template",
        )
    top_up_stock(dynamodb, inventory, plan.top_ups)
    outcomes = tuple(OrderOutcome(order) for order in plan.orders)
    watcher = OrderWatcher(
        dynamodb,
        stack.outputs["OrdersTableName"],
        read_dead_letters=OnFailureQueue(stack, region).letters if is_poisoning else lambda: (),
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

    if sampler:
        sampler.start()
    started = time.time()
    resources: ResourceUsage | None = None
    try:
        with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="bench-client") as pool:
            origin = time.monotonic()
            for outcome in outcomes:
                not_before = origin + outcome.planned.index / config.rate if config.rate else origin
                placements.append(
                    pool.submit(
                        _place,
                        client,
                        outcome,
                        customer_id,
                        f"{customer_id}-{outcome.planned.index}",
                        watcher,
                        stop,
                        not_before,
                    )
                )
            try:
                # Every POST has its own HTTP timeout, so placing always ends; this bound is a backstop.
                pace = config.orders / config.rate if config.rate else 0
                wait_until(
                    is_placed,
                    timeout=pace + 60 + 30 * math.ceil(config.orders / config.concurrency),
                    what=f"{config.orders} orders to be placed",
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
                timeout=config.wait_seconds,
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
    finally:
        stop.set()
        if sampler:
            try:
                resources = sampler.stop()
            except SandboxError as error:  # never hide the error that ended the run
                note = str(error)
    on_progress(BenchProgress("checking", len(outcomes), watcher.terminal, 0, watcher.terminal))
    accepted_ids = [str(o.order_id) for o in outcomes if o.order_id]
    poisoned = [str(o.order_id) for o in outcomes if o.order_id and o.planned.is_poisoned]
    snapshot = read_snapshot(stack, region, accepted_ids, plan.stock, plan.top_ups, poisoned)
    return BenchReport(
        config,
        run_id,
        customer_id,
        plan,
        outcomes,
        started,
        placed,
        max(finished, placed),
        resources,
        note,
        check_invariants(snapshot),
    )
