"""A burst of orders on the embedded engine: every saga completes on a bounded set of Lambda workers."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.engine_patches import DEFAULT_WORKER_TTL_SECONDS, REAP_INTERVAL_SECONDS
from sandbox.orders import OrdersClient
from sandbox.prewarm import engine_workers
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

pytestmark = pytest.mark.integration

BURST_ORDERS = 32
BURST_CONCURRENCY = 8


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    return int(text[text.rindex(")") + 2 :].split()[1])


def _descends_from(pid: int, ancestor: int) -> bool:
    # A forked worker is the engine's grandchild (the engine -> the worker parent -> the worker).
    for _ in range(4):
        parent = _parent_pid(pid)
        if parent is None or parent <= 1:
            return False
        if parent == ancestor:
            return True
        pid = parent
    return False


def workers_by_function(engine_pid: int, endpoint_url: str) -> Counter[str]:
    """The engine's live Lambda worker processes, counted by function name.

    The engine says which process serves which function; /proc confirms each is a live process
    under the engine.
    """
    workers = engine_workers(endpoint_url)
    assert workers is not None, "the engine did not list its workers"
    return Counter(
        worker["function"] for worker in workers["workers"] if _descends_from(int(worker["pid"]), engine_pid)
    )


class PeakWorkers:
    """Samples the engine's workers in the background and keeps each function's peak."""

    def __init__(self, engine_pid: int, endpoint_url: str) -> None:
        self.engine_pid = engine_pid
        self.endpoint_url = endpoint_url
        self.peak: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak |= workers_by_function(self.engine_pid, self.endpoint_url)  # |: the larger of each
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> PeakWorkers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def place_and_follow(api: OrdersClient, customer_id: str, product_id: str) -> dict[str, Any]:
    placed = api.place_order(
        {"customerId": customer_id, "items": [{"productId": product_id, "quantity": 1, "price": 5.0}]}
    )
    api.follow_order(placed["orderId"], timeout=120)
    # Read again once the saga has ended: the GET that saw it end may have read the order item
    # just before the saga's last step wrote it.
    return dict(api.get_order(placed["orderId"]).body)


def test_a_burst_of_orders_completes_on_at_most_the_configured_workers_per_function(
    stack: LocalStack, api: OrdersClient, engine_settings: Settings, customer_id: str, make_product: Any
) -> None:
    cap = engine_settings.lambda_workers
    if cap == 0:
        pytest.skip("SANDBOX_LAMBDA_WORKERS=0: the engine's worker pools are unbounded")
    assert stack.engine.pid is not None
    # GIVEN a product with stock for the whole burst
    product = make_product(stock=BURST_ORDERS)
    # WHEN 32 orders are placed, 8 at a time, and their sagas followed
    with (
        PeakWorkers(stack.engine.pid, stack.engine.endpoint_url) as workers,
        ThreadPoolExecutor(BURST_CONCURRENCY) as pool,
    ):
        orders = list(pool.map(lambda _: place_and_follow(api, customer_id, product), range(BURST_ORDERS)))
    # THEN every saga completed: none waited its way into a Task timeout
    assert Counter(order["status"] for order in orders) == {"COMPLETED": BURST_ORDERS}
    assert all(step["attempts"] == 1 for order in orders for step in order["steps"])
    # AND no function ever ran more workers than the setting allows
    assert workers.peak, "no Lambda worker processes were seen under the engine"
    assert max(workers.peak.values()) <= cap, workers.peak
    # AND the surplus is reaped within seconds: one warm worker per function is left
    wait_until(
        lambda: (
            max(workers_by_function(stack.engine.pid, stack.engine.endpoint_url).values(), default=0) <= 1
        ),
        timeout=DEFAULT_WORKER_TTL_SECONDS + REAP_INTERVAL_SECONDS + 10,
        what="the engine to reap the surplus Lambda workers",
    )


def test_an_execution_runs_at_once_and_its_history_is_complete(
    stack: LocalStack, api: OrdersClient, engine_settings: Settings, customer_id: str, make_product: Any
) -> None:
    # GIVEN a completed order
    order = place_and_follow(api, customer_id, make_product(stock=5))
    sfn = stack.client("stepfunctions", engine_settings.region)
    machine = stack.outputs["StateMachineArn"]
    first = sfn.describe_execution(
        executionArn=f"{machine.replace(':stateMachine:', ':execution:')}:{order['orderId']}"
    )
    # WHEN its saga is replayed (a new execution, same input)
    started = sfn.start_execution(
        stateMachineArn=machine, name=f"replay-{uuid.uuid4().hex[:8]}", input=first["input"]
    )
    # THEN DescribeExecution right after StartExecution sees it running
    assert sfn.describe_execution(executionArn=started["executionArn"])["status"] == "RUNNING"
    ended = wait_until(
        lambda: (
            (d := sfn.describe_execution(executionArn=started["executionArn"]))["status"] != "RUNNING" and d
        ),
        timeout=30,
        what="the replayed saga to finish",
    )
    assert ended["status"] == "SUCCEEDED"
    # AND its history is whole: numbered from 1 without gaps, from start to success
    events = sfn.get_execution_history(executionArn=started["executionArn"], maxResults=1000)["events"]
    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert (events[0]["type"], events[-1]["type"]) == ("ExecutionStarted", "ExecutionSucceeded")
    types = Counter(event["type"] for event in events)
    assert types["TaskStateEntered"] == types["TaskStateExited"] == types["TaskSucceeded"] >= 4
