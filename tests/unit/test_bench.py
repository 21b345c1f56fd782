"""`sandbox bench` without an engine: the plan, percentiles, the invariant checker, /proc sampling."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sandbox.bench import (
    CHARGE_LIMIT,
    MAX_ITEM_QUANTITY,
    OrderOutcome,
    OrderWatcher,
    PlannedOrder,
    Product,
    ResourceSampler,
    TableSnapshot,
    check_invariants,
    percentile,
    plan_orders,
    read_process_tree,
    summarize_latencies,
)
from sandbox.catalog import DEMO_PRODUCTS
from sandbox.errors import UsageError
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
    assert plan.kind_counts() == {"happy": 18, "out-of-stock": 3, "declined": 3, "fail": 3, "flaky": 3}
    assert plan.expected_counts() == {"COMPLETED": 21, "FAILED": 9}
    reasons = Counter((o.expected_reason or "").split(":")[0] for o in plan.orders if o.expected_reason)
    assert reasons == {"OutOfStockError": 3, "PaymentDeclinedError": 3, "InjectedFailure": 3}


def test_every_planned_order_says_what_it_expects() -> None:
    plan = plan_orders(CATALOG, 100, "faults", seed=3)
    for order in plan.orders:
        if order.kind in ("happy", "flaky"):
            assert (order.expected_status, order.expected_reason) == ("COMPLETED", None)
            assert order.total <= CHARGE_LIMIT
            assert 1 <= len(order.lines) <= 3
        if order.kind == "flaky":
            assert order.faults and all(1 <= n <= 2 for n in order.faults["flaky"].values())
        if order.kind == "fail":
            step = order.faults and order.faults["fail"]
            assert order.expected_reason == f"InjectedFailure: injected failure in {step}"
        if order.kind == "declined":
            assert order.total > CHARGE_LIMIT
            assert order.expected_reason == "PaymentDeclinedError"
        if order.kind == "out-of-stock":
            (line,) = order.lines
            after_top_up = CATALOG[line.product_id].stock + plan.top_ups.get(line.product_id, 0)
            assert after_top_up < line.quantity <= MAX_ITEM_QUANTITY
            assert order.expected_reason == "OutOfStockError"


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
                "failureReason": "InjectedFailure: injected failure in shipping",
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
