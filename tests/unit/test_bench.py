"""`sandbox bench` without an engine: the plan, percentiles, the invariant checker, /proc sampling."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from order_api.models import parse_order_request
from sandbox.bench import (
    CHARGE_LIMIT,
    DEAD_LETTER_CHECK,
    DEAD_LETTERED,
    MAX_ITEM_QUANTITY,
    ApiAnswer,
    BenchConfig,
    BenchReport,
    Load,
    OnFailureQueue,
    OrderOutcome,
    OrderWatcher,
    PlannedOrder,
    Product,
    ResourceSampler,
    TableSnapshot,
    Verdict,
    check_invariants,
    percentile,
    plan_orders,
    read_process_tree,
    summarize_latencies,
)
from sandbox.bench.run import _place
from sandbox.catalog import DEMO_PRODUCTS
from sandbox.dlq import DeadLetter
from sandbox.errors import UsageError
from sandbox.orders import ApiResponse
from sandbox.waiting import wait_until

CATALOG = {pid: Product(pid, product["price"], product["stock"]) for pid, product in DEMO_PRODUCTS.items()}


# --- the plan ------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_plan() -> None:
    # GIVEN one catalog WHEN planning twice with one seed, and once with another
    first = plan_orders(CATALOG, 200, "faults", seed=7)
    again = plan_orders(CATALOG, 200, "faults", seed=7)
    other = plan_orders(CATALOG, 200, "faults", seed=8)
    # THEN the same seed gives the very same orders and top-ups; another seed other orders
    assert first == again
    assert [o.payload("c") for o in first.orders] == [o.payload("c") for o in again.orders]
    assert [o.payload("c") for o in first.orders] != [o.payload("c") for o in other.orders]


def test_the_faults_mix_has_a_fifth_business_failures_and_a_fifth_injected_faults() -> None:
    plan = plan_orders(CATALOG, 30, "faults", seed=1)
    assert plan.kind_counts() == {
        "happy": 17, "out-of-stock": 3, "declined": 3, "fail": 3, "flaky": 3, "poison": 1,
    }  # fmt: skip
    assert plan.expected_counts() == {"COMPLETED": 20, "FAILED": 9, DEAD_LETTERED: 1}
    reasons = Counter((o.expected_reason or "").split(":")[0] for o in plan.orders if o.expected_reason)
    assert reasons == {"OutOfStockError": 3, "PaymentDeclinedError": 3, "InjectedFault": 3}


def test_a_planned_order_is_sent_without_its_faults() -> None:
    # GIVEN a faults run WHEN its orders are sent THEN each body is the business request alone
    # (the faults are rules set at the invoke boundary), and the API accepts it
    plan = plan_orders(CATALOG, 100, "faults", seed=3)
    assert any(order.faults for order in plan.orders)
    for order in plan.orders:
        payload = order.payload("c")
        assert set(payload) == {"customerId", "items"}
        parse_order_request(json.dumps(payload))


def test_every_planned_order_says_what_it_expects() -> None:
    plan = plan_orders(CATALOG, 100, "faults", seed=3)
    for order in plan.orders:
        if order.kind in ("happy", "flaky"):
            assert (order.expected_status, order.expected_reason) == ("COMPLETED", None)
            assert order.total <= CHARGE_LIMIT
            assert 1 <= len(order.lines) <= 3
        if order.kind == "flaky":
            assert order.faults and all(1 <= n <= 2 for n in order.faults["flaky"].values())
        if order.kind == "poison":
            assert order.faults == {"poison": True} and order.is_poisoned and not order.is_reserving
            assert (order.expected_status, order.expected_reason) == (DEAD_LETTERED, None)
            assert 1 <= len(order.lines) <= 3
        else:
            assert not order.is_poisoned
        if order.kind == "fail":
            step = order.faults and order.faults["fail"]
            # what the fault rule of `--fail STEP` answers (sandbox.demo_faults), as the order records it
            assert order.expected_reason == f"InjectedFault: injected failure in {step}"
        if order.kind == "declined":
            assert order.total > CHARGE_LIMIT
            assert order.expected_reason == "PaymentDeclinedError"
        if order.kind == "out-of-stock":
            (line,) = order.lines
            after_top_up = CATALOG[line.product_id].stock + plan.top_ups.get(line.product_id, 0)
            assert after_top_up < line.quantity <= MAX_ITEM_QUANTITY
            assert order.expected_reason == "OutOfStockError"


@pytest.mark.parametrize(
    ("count", "poisoned"), [(10, 0), (19, 0), (20, 1), (40, 1), (100, 1), (300, 3), (1000, 10)]
)
def test_one_order_in_a_hundred_is_poisoned_and_one_from_twenty_orders(count: int, poisoned: int) -> None:
    # GIVEN a faults run WHEN planning it THEN a hundredth is poisoned, at least one from 20 orders
    plan = plan_orders(CATALOG, count, "faults", seed=4)
    assert plan.kind_counts().get("poison", 0) == poisoned
    assert sum(1 for order in plan.orders if order.is_poisoned) == poisoned


def test_a_small_faults_run_still_has_every_other_kind_and_no_poison() -> None:
    plan = plan_orders(CATALOG, 8, "faults", seed=1)
    assert plan.kind_counts() == {"happy": 4, "out-of-stock": 1, "declined": 1, "fail": 1, "flaky": 1}


def test_only_the_faults_mix_poisons() -> None:
    for mix in ("happy", "business"):
        assert not any(order.is_poisoned for order in plan_orders(CATALOG, 300, mix, seed=1).orders)


def test_top_ups_cover_every_reserving_order_at_once() -> None:
    # GIVEN a catalog whose stock is short (5 espresso machines), and many orders
    plan = plan_orders(CATALOG, 400, "faults", seed=2)
    needed: Counter[str] = Counter()
    for order in plan.orders:
        if order.is_reserving:
            for line in order.lines:
                needed[line.product_id] += line.quantity
    # THEN after the top-ups each product has enough even if every reservation is held together
    for product, units in needed.items():
        assert CATALOG[product].stock + plan.top_ups.get(product, 0) >= units
    # AND only products that were short are topped up
    assert all(CATALOG[product].stock < units for product, units in needed.items() if product in plan.top_ups)
    assert "espresso-machine" in plan.top_ups


def test_the_happy_mix_is_only_ordinary_orders() -> None:
    plan = plan_orders(CATALOG, 50, "happy", seed=1)
    assert plan.kind_counts() == {"happy": 50}
    assert all(o.faults is None for o in plan.orders)


def test_orders_without_an_injected_inventory_failure_or_shortage_reserve() -> None:
    lines = plan_orders(CATALOG, 1, "happy", seed=1).orders[0].lines
    assert PlannedOrder(0, "fail", lines, {"fail": "payment"}, "FAILED").is_reserving
    assert not PlannedOrder(0, "fail", lines, {"fail": "inventory"}, "FAILED").is_reserving
    assert not PlannedOrder(0, "out-of-stock", lines, None, "FAILED").is_reserving


def test_no_out_of_stock_order_can_be_planned_beyond_the_quantity_limit() -> None:
    rich = {pid: Product(pid, p.price, MAX_ITEM_QUANTITY) for pid, p in CATALOG.items()}
    with pytest.raises(UsageError, match="no order can run out of stock"):
        plan_orders(rich, 20, "faults", seed=1)


def test_an_unknown_mix_or_an_empty_catalog_is_refused() -> None:
    with pytest.raises(UsageError, match="--mix"):
        plan_orders(CATALOG, 5, "chaos", seed=1)
    with pytest.raises(UsageError, match="none of the demo products"):
        plan_orders({}, 5, "happy", seed=1)


def test_the_limits_mirror_the_services() -> None:
    from pydantic import ValidationError

    from order_api.models import OrderItem
    from payment.charges import CHARGE_LIMIT as SERVICE_LIMIT

    assert SERVICE_LIMIT == CHARGE_LIMIT
    OrderItem(productId="p", quantity=MAX_ITEM_QUANTITY, price=Decimal("1"))
    with pytest.raises(ValidationError):
        OrderItem(productId="p", quantity=MAX_ITEM_QUANTITY + 1, price=Decimal("1"))


def test_an_order_matches_its_expectation_by_status_and_reason_prefix() -> None:
    order = PlannedOrder(0, "declined", (), None, "FAILED", "PaymentDeclinedError")
    assert order.is_expected("FAILED", "PaymentDeclinedError: charge of 12495.00 declined")
    assert not order.is_expected("FAILED", "OutOfStockError: not enough stock for mug")
    assert not order.is_expected("COMPLETED", None)
    assert PlannedOrder(1, "happy", ()).is_expected("COMPLETED", None)


# --- percentiles ---------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1) == 100
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2
    assert percentile([7.0], 0.99) == 7


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_latency_summary_is_in_milliseconds() -> None:
    assert summarize_latencies([0.1, 0.2, 0.3, 0.4]) == {
        "p50": 200.0,
        "p95": 400.0,
        "p99": 400.0,
        "max": 400.0,
    }
    assert summarize_latencies([]) is None


# --- the invariant checker -----------------------------------------------------------------------


def consistent_tables() -> dict[str, Any]:
    """Two COMPLETED orders and two FAILED ones, as a correct saga leaves them."""
    return {
        "order_ids": ("c1", "c2", "f1", "f2"),
        "orders": {
            "c1": {
                "orderId": "c1",
                "status": "COMPLETED",
                "totalAmount": Decimal("49.00"),
                "items": [
                    {"productId": "mug", "quantity": Decimal(2)},
                    {"productId": "espresso-beans", "quantity": Decimal(1)},
                ],
            },
            "c2": {
                "orderId": "c2",
                "status": "COMPLETED",
                "totalAmount": Decimal("12"),
                "items": [{"productId": "mug", "quantity": Decimal(1)}],
            },
            "f1": {
                "orderId": "f1",
                "status": "FAILED",
                "totalAmount": Decimal("12"),
                "failureReason": "InjectedFault: injected failure in shipping",
                "items": [{"productId": "mug", "quantity": Decimal(1)}],
            },
            "f2": {
                "orderId": "f2",
                "status": "FAILED",
                "totalAmount": Decimal("12495"),
                "items": [{"productId": "espresso-machine", "quantity": Decimal(5)}],
            },
        },
        "payments": {
            "c1": {"orderId": "c1", "status": "CHARGED", "amount": Decimal("49.00")},
            "c2": {"orderId": "c2", "status": "CHARGED", "amount": Decimal("12.00")},
            "f1": {"orderId": "f1", "status": "REFUNDED", "amount": Decimal("12.00")},
        },
        "shipments": {
            "c1": {"orderId": "c1", "status": "CREATED"},
            "c2": {"orderId": "c2", "status": "CREATED"},
            "f1": {"orderId": "f1", "status": "VOID"},  # a compensation's tombstone holds nothing
        },
        "reservations": {
            "c1": {"orderId": "c1", "status": "RESERVED"},
            "c2": {"orderId": "c2", "status": "RESERVED"},
            "f1": {"orderId": "f1", "status": "RELEASED"},
            "f2": {"orderId": "f2", "status": "RELEASED"},
        },
        "stock_before": {"mug": 200, "espresso-beans": 100, "espresso-machine": 5},
        "top_ups": {"espresso-machine": 3},
        "stock_after": {"mug": 197, "espresso-beans": 99, "espresso-machine": 8},
    }


def violations(tables: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    verdict = check_invariants(TableSnapshot(**tables))
    return {check.name: check.violations for check in verdict.checks if not check.holds}


def test_consistent_tables_hold() -> None:
    verdict = check_invariants(TableSnapshot(**consistent_tables()))
    assert verdict.holds
    assert all(check.skipped is None for check in verdict.checks)


def test_a_pending_or_missing_order_is_caught() -> None:
    tables = consistent_tables()
    tables["orders"]["c2"] = {**tables["orders"]["c2"], "status": "PENDING"}
    tables["order_ids"] += ("ghost",)
    tables["stock_after"]["mug"] = 198  # c2 no longer counts as bought
    assert violations(tables) == {"every accepted order is terminal": ("c2: PENDING", "ghost: no order item")}


@pytest.mark.parametrize(
    ("table", "status", "kept"),
    [("payments", "CHARGED", "charge"), ("shipments", "CREATED", "shipment"),
     ("reservations", "RESERVED", "reservation")],
)  # fmt: skip
def test_a_failed_order_that_keeps_something_is_caught(table: str, status: str, kept: str) -> None:
    tables = consistent_tables()
    tables[table]["f2"] = {"orderId": "f2", "status": status, "amount": Decimal("12495")}
    found = violations(tables)
    assert found == {
        "no FAILED order keeps a charge, shipment or reservation": (f"f2: FAILED but keeps its {kept}",)
    }


def test_a_completed_order_without_its_charge_or_with_another_amount_is_caught() -> None:
    tables = consistent_tables()
    del tables["payments"]["c2"]
    tables["payments"]["c1"] = {**tables["payments"]["c1"], "amount": Decimal("48.99")}
    assert violations(tables) == {
        "every COMPLETED order is charged once, for its total": (
            "c1: charged 48.99, total 49.00",
            "c2: COMPLETED, charge missing",
        )
    }


def test_a_completed_order_refunded_or_not_shipped_is_caught() -> None:
    tables = consistent_tables()
    tables["payments"]["c2"] = {**tables["payments"]["c2"], "status": "REFUNDED"}
    tables["shipments"]["c1"] = {"orderId": "c1", "status": "CANCELLED"}
    del tables["shipments"]["c2"]
    found = violations(tables)
    assert found["every COMPLETED order is charged once, for its total"] == (
        "c2: COMPLETED, charge REFUNDED",
    )
    assert found["every COMPLETED order is shipped once"] == (
        "c1: COMPLETED, shipment CANCELLED",
        "c2: COMPLETED, shipment missing",
    )


def test_stock_that_does_not_add_up_is_caught() -> None:
    # GIVEN a FAILED order whose reservation was never given back
    tables = consistent_tables()
    tables["stock_after"]["espresso-machine"] = 3
    assert violations(tables) == {
        "stock = before + top-up − bought by COMPLETED orders": (
            "espresso-machine: stock 3, expected 8 (before 5 + top-up 3 − bought 0)",
        )
    }


def test_without_a_reservations_table_that_check_is_skipped_and_said_so() -> None:
    tables = {**consistent_tables(), "reservations": None}
    verdict = check_invariants(TableSnapshot(**tables))
    assert verdict.holds
    skipped = [check for check in verdict.checks if check.skipped]
    assert [(c.name, c.skipped) for c in skipped] == [
        ("no FAILED order keeps a reservation", "the stack has no ReservationsTableName output")
    ]
    assert "no FAILED order keeps a charge or shipment" in [check.name for check in verdict.checks]


def poisoned_tables() -> dict[str, Any]:
    """The consistent tables, and a poisoned order p1: PENDING, its record in the on-failure queue."""
    tables = consistent_tables()
    tables["order_ids"] += ("p1",)
    tables["orders"]["p1"] = {"orderId": "p1", "status": "PENDING", "totalAmount": Decimal("12"),
                              "items": [{"productId": "mug", "quantity": Decimal(1)}]}  # fmt: skip
    return {**tables, "poisoned": ("p1",), "dead_lettered": ("p1",)}


def test_a_dead_lettered_poisoned_order_is_terminal_and_the_queue_check_names_it() -> None:
    verdict = check_invariants(TableSnapshot(**poisoned_tables()))
    assert verdict.holds, verdict.as_dict()
    (check,) = [c for c in verdict.checks if c.name == DEAD_LETTER_CHECK]
    assert check.subjects == ("p1",)
    assert check.as_dict()["subjects"] == ["p1"]


def test_a_poisoned_order_missing_from_the_queue_is_caught_twice() -> None:
    tables = {**poisoned_tables(), "dead_lettered": ()}
    assert violations(tables) == {
        "every accepted order is terminal": ("p1: PENDING",),
        DEAD_LETTER_CHECK: ("p1: poisoned, not in the on-failure queue",),
    }


def test_an_ordinary_order_in_the_queue_or_a_record_dead_lettered_twice_is_caught() -> None:
    # GIVEN c2 in the queue although it was not poisoned, and p1 in two letters
    tables = {**poisoned_tables(), "dead_lettered": ("p1", "c2", "p1")}
    # THEN both are named, and c2 is not thereby terminal (it is COMPLETED anyway)
    assert violations(tables) == {
        DEAD_LETTER_CHECK: ("c2: in the on-failure queue, not poisoned", "p1: in 2 letters"),
    }


def test_an_ordinary_pending_order_in_the_queue_is_not_terminal() -> None:
    tables = poisoned_tables()
    tables["orders"]["c2"] = {**tables["orders"]["c2"], "status": "PENDING"}
    tables["stock_after"]["mug"] = 198  # c2 no longer counts as bought
    tables["dead_lettered"] = ("p1", "c2")
    assert violations(tables) == {
        "every accepted order is terminal": ("c2: PENDING",),
        DEAD_LETTER_CHECK: ("c2: in the on-failure queue, not poisoned",),
    }


def test_without_an_on_failure_queue_that_check_is_skipped_and_said_so() -> None:
    verdict = check_invariants(TableSnapshot(**{**consistent_tables(), "dead_lettered": None}))
    assert verdict.holds
    assert [(c.name, c.skipped) for c in verdict.checks if c.skipped] == [
        (DEAD_LETTER_CHECK, "the stack has no OutboxFailureQueueUrl output")
    ]


# --- watching orders from the table --------------------------------------------------------------


class FakeDynamoDB:
    """Answers BatchGetItem from a dict of ORDER items; records the keys asked for."""

    def __init__(self, items: dict[str, dict[str, Any]]):
        self.items, self.asked = items, []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        ids = [key["pk"]["S"].removeprefix("ORDER#") for key in request["Keys"]]
        self.asked.append(ids)
        found = [self.items[i] for i in ids if i in self.items]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}


def test_the_watcher_reads_only_pending_orders_and_takes_the_end_time_from_the_item() -> None:
    # GIVEN one order already FAILED (stamped at a known time) and one still PENDING
    dynamodb = FakeDynamoDB({
        "a": {"orderId": {"S": "a"}, "status": {"S": "FAILED"}, "updatedAt": {"S": "2026-01-01T00:00:02+00:00"},
              "failureReason": {"S": "OutOfStockError: not enough stock for mug"}},
        "b": {"orderId": {"S": "b"}, "status": {"S": "PENDING"}},
    })  # fmt: skip
    watcher = OrderWatcher(dynamodb, "orders")
    planned = PlannedOrder(0, "happy", ())
    first = OrderOutcome(planned, sent_at=1767225601.5, order_id="a")
    second = OrderOutcome(planned, sent_at=1767225601.0, order_id="b")
    watcher.add(first)
    watcher.add(second)
    # WHEN polling twice
    assert watcher.poll() == 1
    dynamodb.items["b"] = {**dynamodb.items["b"], "status": {"S": "COMPLETED"}}
    assert watcher.poll() == 0
    # THEN the second poll asked only for the order still pending
    assert dynamodb.asked == [["a", "b"], ["b"]]
    # AND latency runs from the POST to the item's own terminal stamp
    assert (first.status, first.reason) == ("FAILED", "OutOfStockError: not enough stock for mug")
    assert first.latency == pytest.approx(0.5)
    assert second.status == "COMPLETED" and second.finished_at is not None  # no stamp: the poll's time
    assert watcher.terminal == 2


def dead_letter(*order_ids: str, failed_at: str = "2026-01-01T00:00:04Z") -> DeadLetter:
    records = [{"dynamodb": {"NewImage": {"orderId": {"S": order_id}}}} for order_id in order_ids]
    return DeadLetter("m-" + "-".join(order_ids), "RetryAttemptsExhausted", "Unhandled", failed_at, records)


class FakeQueue:
    """The on-failure queue as the watcher reads it, counting the reads."""

    def __init__(self, *letters: DeadLetter):
        self.letters, self.reads = list(letters), 0

    def __call__(self) -> list[DeadLetter]:
        self.reads += 1
        return list(self.letters)


def test_the_watcher_finishes_a_poisoned_order_once_its_record_is_dead_lettered() -> None:
    # GIVEN a poisoned order (PENDING for good), an ordinary one, and a queue with an older run's letter
    dynamodb = FakeDynamoDB({
        "p": {"orderId": {"S": "p"}, "status": {"S": "PENDING"}},
        "h": {"orderId": {"S": "h"}, "status": {"S": "PENDING"}},
    })  # fmt: skip
    queue, now = FakeQueue(dead_letter("older-run")), [0.0]
    watcher = OrderWatcher(dynamodb, "orders", queue, dead_letter_interval=1.0, clock=lambda: now[0])
    poisoned = OrderOutcome(PlannedOrder(0, "poison", (), {"poison": True}, DEAD_LETTERED), sent_at=1767225600.0,
                            order_id="p")  # fmt: skip
    ordinary = OrderOutcome(PlannedOrder(1, "happy", ()), sent_at=1767225600.0, order_id="h")
    watcher.add(poisoned)
    watcher.add(ordinary)
    # WHEN polling often: the queue is read at most once a second
    assert [watcher.poll() for _ in range(3)] == [2, 2, 2]
    assert queue.reads == 0
    now[0] = 1.0
    assert watcher.poll() == 2 and queue.reads == 1  # only the older run's letter: nothing changes
    # AND once the record is dead-lettered, the next due read finishes the poisoned order
    queue.letters.append(dead_letter("p"))
    now[0] = 1.5
    assert watcher.poll() == 2 and queue.reads == 1
    now[0] = 2.0
    assert watcher.poll() == 1 and queue.reads == 2
    assert poisoned.status == DEAD_LETTERED and poisoned.is_terminal and not poisoned.is_unexpected
    assert poisoned.finished_at == pytest.approx(1767225604.0)  # the letter's timestamp
    assert watcher.terminal == 1 and watcher.pending == ["h"]
    # AND with no poisoned order left, the queue is not read again
    now[0] = 10.0
    dynamodb.items["h"] = {**dynamodb.items["h"], "status": {"S": "COMPLETED"}}
    assert watcher.poll() == 0 and queue.reads == 2


class FakeSQS:
    """Answers GetQueueAttributes with a size that a test sets."""

    def __init__(self) -> None:
        self.visible, self.in_flight = 0, 0

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": {"ApproximateNumberOfMessages": str(self.visible),
                               "ApproximateNumberOfMessagesNotVisible": str(self.in_flight)}}  # fmt: skip


def test_the_on_failure_queue_is_listed_again_only_when_its_size_changes_or_a_while_later() -> None:
    # GIVEN a queue of one letter, listed through a counting fake
    sqs, queue_letters, now = FakeSQS(), FakeQueue(dead_letter("older-run")), [0.0]
    sqs.visible = 1
    stack = SimpleNamespace(outputs={"OutboxFailureQueueUrl": "http://queue"})
    queue = OnFailureQueue(stack, "us-east-1", list_letters=queue_letters, sqs=sqs,  # type: ignore[arg-type]
                           clock=lambda: now[0])  # fmt: skip
    # WHEN read three times at the same size THEN it is listed once
    assert [len(queue.letters()) for _ in range(3)] == [1, 1, 1] and queue_letters.reads == 1
    # AND a new letter (even one in flight) makes the next read list it again
    queue_letters.letters.append(dead_letter("p"))
    sqs.in_flight = 1
    assert [letter.order_ids for letter in queue.letters()] == [["older-run"], ["p"]]
    assert queue_letters.reads == 2 == queue.listings
    # AND at the same size it lists again only after RELIST_AFTER seconds
    now[0] = 9.9
    queue.letters()
    assert queue_letters.reads == 2
    now[0] = 10.0
    queue.letters()
    assert queue_letters.reads == 3


def test_poisoned_orders_count_as_finished_but_not_in_latency_percentiles() -> None:
    # GIVEN a run whose ordinary order took 0.2 s and whose poisoned order was dead-lettered after 4 s
    ordinary = OrderOutcome(PlannedOrder(0, "happy", ()), 100.0, 100.01, "h", None, "COMPLETED", None, 100.2)
    poisoned = OrderOutcome(PlannedOrder(1, "poison", (), {"poison": True}, DEAD_LETTERED), 100.0, 100.01, "p",
                            None, DEAD_LETTERED, None, 104.0)  # fmt: skip
    plan = plan_orders(CATALOG, 2, "happy", seed=1)
    load = Load((ordinary, poisoned), 100.0, 100.01, 104.0, None, "not measured")
    report = BenchReport(BenchConfig(orders=2, mix="faults"), "r", "bench-r", plan, load, Verdict(()))
    summary = report.as_dict()
    # THEN latency is the ordinary order's alone; both count as terminal; the run is as planned
    assert summary["latencyMs"] == {"p50": 200.0, "p95": 200.0, "p99": 200.0, "max": 200.0}
    assert summary["statusCounts"] == {"COMPLETED": 1, DEAD_LETTERED: 1}
    assert summary["throughput"]["completedPerSecond"] == 0.5
    assert summary["unexpected"] == [] and summary["ok"] is True


# --- sampling /proc ------------------------------------------------------------------------------


def write_stat(
    proc: Path, pid: int, name: str, ppid: int, times: tuple[int, int, int, int], rss: int
) -> None:
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(t) for t in times] + ["0"] * 6 + [str(rss)] + ["0"] * 20
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")


def test_a_process_tree_sums_cpu_and_rss_of_every_descendant(tmp_path: Path) -> None:
    # GIVEN an engine (10) with a worker (11) that has a child (12), and an unrelated process (20)
    import os

    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    write_stat(tmp_path, 10, "python -m sandbox.engine_patches", 1, (ticks, ticks, ticks, 0), 100)
    write_stat(tmp_path, 11, "worker (x) y", 10, (ticks, 0, 0, 0), 50)  # parentheses in the name
    write_stat(tmp_path, 12, "child", 11, (0, ticks, 0, 0), 10)
    write_stat(tmp_path, 20, "other", 1, (50 * ticks, 0, 0, 0), 999)
    (tmp_path / "self").mkdir()  # not a pid: ignored
    # WHEN sampling the engine's tree
    sample = read_process_tree(10, tmp_path)
    # THEN the reaped children's time (cutime) counts, and the unrelated process does not
    assert sample is not None
    assert sample.cpu_seconds == pytest.approx(5)
    assert sample.rss_bytes == 160 * page
    assert sample.descendants == 2
    assert read_process_tree(99, tmp_path) is None
    # AND without smaps_rollup there is no PSS; with it, each process's Pss line is summed
    assert sample.pss_bytes is None
    for pid, kilobytes in ((10, 300), (11, 40)):
        (tmp_path / str(pid) / "smaps_rollup").write_text(
            f"Rss: 999 kB\nPss:  {kilobytes} kB\nShared_Clean: 1 kB\n"
        )
    sampled = read_process_tree(10, tmp_path)
    assert sampled is not None and sampled.pss_bytes == 340 * 1024


def test_sampling_the_test_process_sees_its_child_and_its_cpu() -> None:
    import os

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        before = read_process_tree(os.getpid())
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:  # burn CPU in this process
            pass
        after = read_process_tree(os.getpid())
        assert before is not None and after is not None
        assert after.descendants >= 1
        assert after.rss_bytes > 10 * 2**20
        assert after.cpu_seconds - before.cpu_seconds >= 0.2
        sampler = ResourceSampler(os.getpid(), interval=0.01)
        sampler.start()
        wait_until(lambda: sampler.samples >= 3, timeout=5, what="three samples", interval=0.01)
        usage = sampler.stop()
        assert usage.peak_workers >= 1 and usage.peak_rss_bytes > 0 and usage.samples >= 2
        # PSS splits shared pages among their sharers: never more than the summed RSS
        assert usage.peak_pss_bytes is not None and 0 < usage.peak_pss_bytes <= usage.peak_rss_bytes
        assert usage.pss_after_bytes is not None and usage.pss_after_bytes > 0
    finally:
        child.communicate(b"")


def test_the_business_mix_fails_a_fifth_for_business_reasons_and_injects_nothing() -> None:
    # GIVEN the load the throughput target names: a fifth failing for business reasons
    plan = plan_orders(CATALOG, 100, "business", seed=5)
    # THEN a tenth run out of stock, a tenth are declined, the rest are ordinary, none carry faults
    assert plan.kind_counts() == {"happy": 80, "out-of-stock": 10, "declined": 10}
    assert all(not order.faults for order in plan.orders)
    reasons = Counter((o.expected_reason or "").split(":")[0] for o in plan.orders if o.expected_reason)
    assert reasons == {"OutOfStockError": 10, "PaymentDeclinedError": 10}


# --- placing an order, and the same request again ------------------------------------------------


class FakeApi:
    """POST /orders as the order API answers it: one order per key; a key still in flight is a 409."""

    def __init__(self, hold_first: float = 0.0):
        self.orders: dict[str, str] = {}
        self.in_flight: set[str] = set()
        self.posts = 0
        self.hold_first = hold_first
        self.lock = threading.Lock()

    def post_order(self, payload: dict[str, Any], key: str) -> ApiResponse:
        with self.lock:
            self.posts += 1
            if key in self.in_flight:
                return ApiResponse(409, {"message": "request with this Idempotency-Key is in flight"}, b"")
            if key in self.orders:
                return ApiResponse(201, {"orderId": self.orders[key]}, b"")
            self.in_flight.add(key)
        time.sleep(self.hold_first)  # the first request still being handled while the twin arrives
        with self.lock:
            self.in_flight.discard(key)
            self.orders[key] = f"order-{len(self.orders) + 1}"
            return ApiResponse(201, {"orderId": self.orders[key]}, b"")


class Watched:
    def __init__(self) -> None:
        self.added: list[OrderOutcome] = []

    def add(self, outcome: OrderOutcome) -> None:
        self.added.append(outcome)


@pytest.mark.parametrize("duplicate", ["after", "concurrent"])
def test_a_request_sent_twice_is_accepted_once_and_its_second_answer_kept(duplicate: str) -> None:
    # GIVEN an order planned to be POSTed twice with one key, and an API that holds the first a while
    api, watched = FakeApi(hold_first=0.2 if duplicate == "concurrent" else 0.0), Watched()
    outcome = OrderOutcome(PlannedOrder(0, "happy", (), duplicate=duplicate))
    # WHEN the client places it
    _place(api, outcome, "c", "k", watched, threading.Event(), 0.0)  # type: ignore[arg-type]
    # THEN the API was asked twice, the order is accepted once and watched once
    assert api.posts == 2 and watched.added == [outcome] and outcome.order_id == "order-1"
    # AND the second answer is kept: the same order again, or the first still in flight
    (answer,) = outcome.duplicate_answers
    expected = ApiAnswer(201, "order-1") if duplicate == "after" else ApiAnswer(409, None, answer.refusal)
    assert answer == expected
    assert duplicate == "after" or (answer.refusal or "").startswith("HTTP 409")


def test_a_request_sent_once_has_no_second_answer() -> None:
    api, watched = FakeApi(), Watched()
    outcome = OrderOutcome(PlannedOrder(0, "happy", ()))
    _place(api, outcome, "c", "k", watched, threading.Event(), 0.0)  # type: ignore[arg-type]
    assert api.posts == 1 and outcome.duplicate_answers == [] and outcome.order_id == "order-1"


# --- calls per order -----------------------------------------------------------------------------


def counts(calls: dict[str, dict[str, int]], invocations: dict[str, int]) -> Any:
    from sandbox.bench.calls import CallCounts

    return CallCounts.from_json({"calls": calls, "observer": {"dynamodb": {"BatchGetItem": 99}},
                                 "invocations": invocations})  # fmt: skip


def test_calls_per_order_are_the_counts_grown_during_the_run_shared_by_its_orders() -> None:
    # GIVEN the engine's counts before a run (a deploy's calls) and after its two orders
    before = counts({"cloudformation": {"DescribeStacks": 4}, "dynamodb": {"PutItem": 5}}, {"inv-fn": 1})
    after = counts(
        {
            "cloudformation": {"DescribeStacks": 4},
            "dynamodb": {"PutItem": 21, "UpdateItem": 12},
            "stepfunctions": {"StartExecution": 2},
        },
        {"inv-fn": 3, "pay-fn": 2},
    )
    # WHEN the run's share is taken
    per_order = after.since(before).per_order(2)
    # THEN the deploy's calls and the watcher's own (observer) reads are not the orders'
    assert per_order["calls"] == 15.0 and per_order["invocations"] == 2.0
    assert per_order["byService"] == {"dynamodb": 14.0, "stepfunctions": 1.0}
    assert per_order["byOperation"] == [
        {"service": "dynamodb", "operation": "PutItem", "perOrder": 8.0, "count": 16},
        {"service": "dynamodb", "operation": "UpdateItem", "perOrder": 6.0, "count": 12},
        {"service": "stepfunctions", "operation": "StartExecution", "perOrder": 1.0, "count": 2},
    ]
    assert per_order["byFunction"] == [
        {"function": "inv-fn", "perOrder": 1.0, "count": 2},
        {"function": "pay-fn", "perOrder": 1.0, "count": 2},
    ]


def test_the_report_carries_calls_per_terminal_order_and_none_without_counts() -> None:
    done = OrderOutcome(PlannedOrder(0, "happy", ()), 100.0, 100.01, "h", None, "COMPLETED", None, 100.2)
    calls = counts({"dynamodb": {"PutItem": 8}}, {"inv-fn": 1})
    with_calls = Load((done,), 100.0, 100.01, 100.2, None, "not measured", calls)
    assert with_calls.figures()["callsPerOrder"]["calls"] == 8.0
    assert Load((done,), 100.0, 100.01, 100.2, None, "not measured").figures()["callsPerOrder"] is None


def test_the_runs_own_clients_mark_their_calls_as_the_observers() -> None:
    # GIVEN a stack on an engine, seen by the run
    from botocore.awsrequest import AWSRequest

    from sandbox.bench.calls import OBSERVER_HEADER, observed
    from sandbox.stack import LocalStack

    engine = SimpleNamespace(endpoint_url="http://127.0.0.1:1", engine="embedded", pid=None)
    stack = LocalStack(engine, {"OrdersTableName": "orders"}, "s")  # type: ignore[arg-type]
    seen = observed(stack)
    # WHEN one of its clients signs a request
    client = seen.client("dynamodb", "us-east-1")
    request = AWSRequest(method="POST", url="http://127.0.0.1:1/", headers={})
    client.meta.events.emit("before-sign.dynamodb.GetItem", request=request)
    # THEN the request carries the observer header; the stack is otherwise the same
    assert request.headers[OBSERVER_HEADER] == "bench"
    assert seen.outputs == stack.outputs and seen.name == "s" and seen.engine is engine


def test_an_engine_without_the_calls_route_counts_nothing() -> None:
    from sandbox.bench.calls import read_call_counts

    assert read_call_counts("http://127.0.0.1:9", timeout=1) is None
