"""A chaos run: plan, place the orders under faults, replay some sagas, let it settle, check the records."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sandbox.bench import (
    TERMINAL_STATUSES,
    BenchProgress,
    OrderOutcome,
    PlannedOrder,
    Progress,
    read_catalog,
    run_load,
)
from sandbox.chaos.check import check
from sandbox.chaos.plan import ChaosConfig, plan_chaos
from sandbox.chaos.records import count_running
from sandbox.chaos.report import ChaosReport
from sandbox.errors import SandboxError
from sandbox.saga import replay_saga
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SETTLE_POLL_SECONDS = 0.5  # between listings of the run's executions while waiting for them to end


def run_chaos(
    stack: LocalStack,
    region: str,
    config: ChaosConfig,
    on_progress: Progress = lambda _: None,
) -> ChaosReport:
    """Plan, place every order with its faults, replay the chosen sagas once they end, wait until
    every execution has ended, and check what the system recorded."""
    config.validate()
    dynamodb: DynamoDBClient = stack.client("dynamodb", region)
    run_id = uuid.uuid4().hex[:8]
    prefix = f"chaos-{run_id}-"
    on_progress(BenchProgress("planning", config.orders))
    plan = plan_chaos(read_catalog(dynamodb, stack.outputs["InventoryTableName"]), config)
    replays: dict[str, str] = {}
    settled: list[float] = []

    def identity(order: PlannedOrder) -> tuple[str, str]:
        """A customer of its own per request (so a second order shows in the table), and its key."""
        customer = f"{prefix}{order.index:05d}"
        return customer, customer

    def replay(order_id: str) -> str:
        try:
            return str(replay_saga(stack, region, order_id, timeout=config.wait_seconds)["status"])
        except SandboxError as error:
            return f"error: {error}"

    def replay_and_settle(outcomes: tuple[OrderOutcome, ...]) -> None:
        """Replay the chosen sagas, as an operator's redrive would, then wait for every execution to end."""
        chosen = [
            str(o.order_id)
            for o in outcomes
            if o.planned.is_replayed and o.order_id and o.status in TERMINAL_STATUSES
        ]
        accepted = sum(1 for o in outcomes if o.order_id)
        terminal = sum(1 for o in outcomes if o.is_terminal)

        def progress(stage: str) -> None:
            on_progress(BenchProgress(stage, len(outcomes), accepted, len(outcomes) - accepted, terminal,
                                      len(chosen), len(replays)))  # fmt: skip

        progress("replaying")
        with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="chaos-replay") as pool:
            for order_id, end in zip(chosen, pool.map(replay, chosen), strict=True):
                replays[order_id] = end
                progress("replaying")
        progress("settling")
        ids = [str(o.order_id) for o in outcomes if o.order_id]
        wait_until(
            lambda: count_running(stack, region, ids) == 0,
            timeout=config.wait_seconds,
            what="every saga execution of the run to end",
            interval=SETTLE_POLL_SECONDS,
        )
        settled.append(time.time())

    load = run_load(
        stack,
        region,
        plan,
        identity=identity,
        concurrency=config.concurrency,
        wait_seconds=config.wait_seconds,
        on_progress=on_progress,
        then=replay_and_settle,
    )
    accepted = [str(o.order_id) for o in load.outcomes if o.order_id]
    on_progress(BenchProgress("checking", len(load.outcomes), len(accepted), 0, len(accepted)))
    faults = {str(o.order_id): o.planned.faults for o in load.outcomes if o.order_id and o.planned.faults}
    verdict = check(
        stack, region, accepted, stock_before=plan.stock, top_ups=plan.top_ups, customer_prefix=prefix,
        faults=faults,
    )  # fmt: skip
    return ChaosReport(config, run_id, prefix, plan, load, verdict, replays, settled[0] if settled else None)
