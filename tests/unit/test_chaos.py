"""`sandbox chaos` without an engine: the seeded plan, the outcome rule, and the checker on hand-made records."""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from sandbox.bench import (
    DEAD_LETTER_CHECK,
    DEAD_LETTERED,
    STOCK_CHECK,
    ApiAnswer,
    Load,
    OrderOutcome,
    PlannedOrder,
    Product,
    TableSnapshot,
)
from sandbox.catalog import DEMO_PRODUCTS
from sandbox.chaos import (
    AT_MOST_ONCE,
    COMPENSATED,
    FAULT_KINDS,
    IMPLIED,
    NO_SECOND_ORDER,
    ONE_SAGA,
    PUBLISHED,
    ChaosConfig,
    ChaosRecords,
    ChaosReport,
    ChaosVerdict,
    SagaExecution,
    StepRecord,
    check_records,
    expected_compensations,
    fault_kinds,
    implied_outcome,
    parse_fault_kinds,
    plan_chaos,
    planned_kinds,
    steps_of,
)
from sandbox.chaos.plan import BUSINESS_SHARES, FAULT_SHARES
from sandbox.errors import UsageError

CATALOG = {pid: Product(pid, product["price"], product["stock"]) for pid, product in DEMO_PRODUCTS.items()}


# --- the plan ------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_plan() -> None:
    # GIVEN one catalog WHEN planning twice with one seed, and once with another
    first = plan_chaos(CATALOG, ChaosConfig(orders=300, seed=7))
    again = plan_chaos(CATALOG, ChaosConfig(orders=300, seed=7))
    other = plan_chaos(CATALOG, ChaosConfig(orders=300, seed=8))
    # THEN the same seed gives the very same orders, faults, replays, duplicates and top-ups
    assert first == again
    assert [(o.payload("c"), o.is_replayed, o.duplicate) for o in first.orders] == [
        (o.payload("c"), o.is_replayed, o.duplicate) for o in again.orders
    ]
    assert [o.payload("c") for o in first.orders] != [o.payload("c") for o in other.orders]


def test_a_small_run_has_every_fault_kind_both_business_failures_and_a_duplicate_request() -> None:
    kinds = planned_kinds(plan_chaos(CATALOG, ChaosConfig(orders=60, seed=3)))
    assert set(FAULT_KINDS) | {"out-of-stock", "declined"} <= set(kinds)
    assert any(kind.startswith("duplicate-request") for kind in kinds)


def test_each_kind_has_its_share_of_a_large_run() -> None:
    plan = plan_chaos(CATALOG, ChaosConfig(orders=2000, seed=1, duplicate_requests=0.1))
    kinds = planned_kinds(plan)
    for kind, share in {**FAULT_SHARES, **BUSINESS_SHARES}.items():
        assert kinds[kind] == round(2000 * share), kind
    assert sum(n for kind, n in kinds.items() if kind.startswith("duplicate-request")) == 200


def test_what_an_order_carries_is_consistent() -> None:
    plan = plan_chaos(CATALOG, ChaosConfig(orders=2000, seed=5))
    (short_line,) = {o.lines for o in plan.orders if o.kind == "out-of-stock"}
    (scarce,) = short_line
    for order in plan.orders:
        faults = order.faults or {}
        # A poisoned record never runs a saga: it carries nothing else and is never replayed
        if faults.get("poison"):
            assert faults == {"poison": True} and order.kind == "happy" and not order.is_replayed
        # A replayed hang would hang again for 20 s
        assert not (faults.get("hang") and order.is_replayed)
        # Flaky steps fail fewer attempts than the retry budget
        assert all(1 <= n <= 2 for n in (faults.get("flaky") or {}).values())
        # The scarce product is only ever ordered beyond its stock
        if order.kind != "out-of-stock":
            assert scarce.product_id not in {line.product_id for line in order.lines}
        # The expected end is the outcome rule's
        expected = implied_outcome(order.faults, order.total, order.kind == "out-of-stock")
        assert (order.expected_status, order.expected_reason) == expected
    after_top_up = CATALOG[scarce.product_id].stock + plan.top_ups.get(scarce.product_id, 0)
    assert scarce.quantity == after_top_up + 1


def test_top_ups_cover_every_reserving_order_and_leave_the_stock_the_run_found() -> None:
    plan = plan_chaos(CATALOG, ChaosConfig(orders=1000, seed=2))
    needed: Counter[str] = Counter()
    bought: Counter[str] = Counter()
    for order in plan.orders:
        for line in order.lines if order.is_reserving else ():
            needed[line.product_id] += line.quantity
            bought[line.product_id] += line.quantity if order.expected_status == "COMPLETED" else 0
    # THEN every reserving order may hold its items at once, on top of the stock there was
    assert plan.top_ups == dict(needed)
    # AND once the completed orders have taken theirs, at least the stock the run found is left
    assert all(plan.top_ups[p] - bought[p] >= 0 for p in needed)


def test_a_ten_thousand_order_run_can_still_run_out_of_stock() -> None:
    # GIVEN more orders than any product's stock could serve within the API's 1000 units a line
    plan = plan_chaos(CATALOG, ChaosConfig(orders=10_000, seed=1))
    # THEN the scarce product, left out of the other orders, is still short by one unit
    (line,) = next(o.lines for o in plan.orders if o.kind == "out-of-stock")
    assert line.quantity <= 1000 and line.product_id not in plan.top_ups


def test_only_the_asked_faults_are_planned() -> None:
    plan = plan_chaos(
        CATALOG, ChaosConfig(orders=200, seed=1, faults=("fail", "replay"), duplicate_requests=0)
    )
    kinds = set(planned_kinds(plan))
    assert kinds == {"fail", "replay", "out-of-stock", "declined"}
    assert all(set(o.faults or {}) <= {"fail"} and o.duplicate is None for o in plan.orders)


def test_fault_kinds_name_everything_an_order_carries() -> None:
    order = PlannedOrder(0, "declined", (), {"flaky": {"payment": 1}, "crash": "publisher"},
                         is_replayed=True, duplicate="after")  # fmt: skip
    assert fault_kinds(order) == ("declined", "flaky", "crash", "replay", "duplicate-request (after)")
    assert fault_kinds(PlannedOrder(1, "happy", ())) == ()


@pytest.mark.parametrize(
    ("text", "kinds"),
    [("all", FAULT_KINDS), ("none", ()), ("", ()), ("hang, fail", ("fail", "hang")), ("replay", ("replay",))],
)
def test_faults_are_parsed_into_their_canonical_order(text: str, kinds: tuple[str, ...]) -> None:
    assert parse_fault_kinds(text) == kinds


def test_an_unknown_fault_is_a_usage_error_naming_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown explode") as raised:
        parse_fault_kinds("fail,explode")
    assert "duplicate-delivery" in (raised.value.hint or "")


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (ChaosConfig(orders=0), "--orders 0"),
        (ChaosConfig(concurrency=0), "--concurrency 0"),
        (ChaosConfig(duplicate_requests=1.5), "--duplicate-requests 1.5"),
        (ChaosConfig(wait_seconds=0), "--wait-seconds 0"),
        (ChaosConfig(faults=("explode",)), "unknown explode"),
    ],
)
def test_a_config_out_of_range_is_refused(config: ChaosConfig, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        config.validate()


def test_the_command_to_reproduce_plans_the_same_run() -> None:
    config = ChaosConfig(
        orders=120, concurrency=3, seed=9, faults=("flaky", "poison"), duplicate_requests=0.2
    )
    words = shlex.split(config.command)
    options = dict(zip(words[2::2], words[3::2], strict=True))
    assert words[:2] == ["sandbox", "chaos"]
    again = ChaosConfig(int(options["--orders"]), int(options["--concurrency"]), int(options["--seed"]),
                        parse_fault_kinds(options["--faults"]), float(options["--duplicate-requests"]))  # fmt: skip
    assert plan_chaos(CATALOG, again) == plan_chaos(CATALOG, config)
    assert "--faults all" in ChaosConfig().command


# --- what faults and business rules imply --------------------------------------------------------

CHEAP, DEAR = Decimal("24.00"), Decimal("12495.00")


@pytest.mark.parametrize(
    ("faults", "total", "is_short", "expected"),
    [
        (None, CHEAP, False, ("COMPLETED", None)),
        ({"flaky": {"payment": 2}, "timeout": "shipping", "duplicateDelivery": True, "crash": "publisher"},
         CHEAP, False, ("COMPLETED", None)),
        (None, CHEAP, True, ("FAILED", "OutOfStockError")),
        (None, DEAR, False, ("FAILED", "PaymentDeclinedError")),
        (None, DEAR, True, ("FAILED", "OutOfStockError")),  # the stock is checked before the card
        ({"fail": "payment"}, DEAR, False, ("FAILED", "InjectedFault: injected failure in payment")),
        ({"fail": "inventory"}, CHEAP, True, ("FAILED", "InjectedFault: injected failure in inventory")),
        ({"fail": "shipping"}, DEAR, False, ("FAILED", "PaymentDeclinedError")),
        ({"hang": "payment"}, DEAR, False, ("FAILED", "States.Timeout")),
        ({"hang": "shipping", "fail": "payment"}, CHEAP, False, ("FAILED", "InjectedFault: injected failure in payment")),
        ({"timeout": "payment"}, DEAR, False, ("FAILED", "PaymentDeclinedError")),
        ({"poison": True, "fail": "payment"}, CHEAP, False, (DEAD_LETTERED, None)),
    ],
)  # fmt: skip
def test_the_first_step_that_fails_for_good_decides_the_outcome(
    faults: dict[str, Any] | None, total: Decimal, is_short: bool, expected: tuple[str, str | None]
) -> None:
    assert implied_outcome(faults, total, is_short) == expected


# --- execution histories -------------------------------------------------------------------------


def history(*states: tuple[str, list[str]]) -> list[dict[str, Any]]:
    """Events of an execution: each state entered, its attempts ("ok" or an error name), exited."""
    events: list[dict[str, Any]] = [{"type": "ExecutionStarted"}]
    for name, attempts in states:
        events.append({"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}})
        for attempt in attempts:
            events.append({"type": "TaskScheduled"})
            if attempt == "ok":
                events.append({"type": "TaskSucceeded"})
            elif attempt == "States.Timeout":
                events.append({"type": "TaskTimedOut", "taskTimedOutEventDetails": {"error": attempt}})
            else:
                events.append({"type": "TaskFailed", "taskFailedEventDetails": {"error": attempt}})
        events.append({"type": "TaskStateExited"})
    events.append({"type": "ExecutionFailed"})
    numbered = [{**event, "id": index + 1} for index, event in enumerate(events)]
    return list(reversed(numbered))  # read in id order, whatever order they come in


def test_a_history_becomes_the_states_entered_with_how_each_ended() -> None:
    events = history(
        ("ReserveInventory", ["TransientStepError", "ok"]),
        ("ChargePayment", ["States.Timeout", "States.Timeout"]),
        ("RefundPayment", ["ok"]),
    )
    assert steps_of(events) == (
        StepRecord("ReserveInventory", True),
        StepRecord("ChargePayment", False, "States.Timeout"),
        StepRecord("RefundPayment", True),
    )


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("ReserveInventory", "OutOfStockError")], []),
        ([("ReserveInventory", "States.Timeout")], ["ReleaseInventory"]),
        ([("ReserveInventory", None), ("ChargePayment", "PaymentDeclinedError")], ["ReleaseInventory"]),
        ([("ReserveInventory", None), ("ChargePayment", "States.Timeout")], ["RefundPayment", "ReleaseInventory"]),
        # `--fail shipping`: a fault at the invoke boundary is no business answer, so shipping is undone too
        ([("ReserveInventory", None), ("ChargePayment", None), ("CreateShipment", "InjectedFault")],
         ["CancelShipment", "RefundPayment", "ReleaseInventory"]),
        ([("ReserveInventory", "InjectedFault")], ["ReleaseInventory"]),
        ([("ReserveInventory", None), ("ChargePayment", None), ("CreateShipment", "Lambda.ServiceException")],
         ["CancelShipment", "RefundPayment", "ReleaseInventory"]),
        ([("ReserveInventory", None), ("ChargePayment", None), ("CreateShipment", None),
          ("MarkOrderCompleted", "InvalidTransitionError")], ["CancelShipment", "RefundPayment", "ReleaseInventory"]),
    ],
)  # fmt: skip
def test_a_failed_saga_owes_the_compensation_of_what_it_did_and_what_it_may_have_done(
    steps: list[tuple[str, str | None]], expected: list[str]
) -> None:
    records = [StepRecord(name, error is None, error) for name, error in steps]
    assert expected_compensations(records) == expected


# --- the checker on hand-made records ------------------------------------------------------------


def ok(*names: str) -> tuple[StepRecord, ...]:
    return tuple(StepRecord(name, True) for name in names)


SHIPPING_FAILED = (
    *ok("ReserveInventory", "ChargePayment"),
    StepRecord("CreateShipment", False, "InjectedFault"),
    *ok("CancelShipment", "RefundPayment", "ReleaseInventory", "MarkOrderFailed"),
)
PAYMENT_HUNG = (
    *ok("ReserveInventory"),
    StepRecord("ChargePayment", False, "States.Timeout"),
    *ok("RefundPayment", "ReleaseInventory", "MarkOrderFailed"),
)
OUT_OF_STOCK = (StepRecord("ReserveInventory", False, "OutOfStockError"), *ok("MarkOrderFailed"))


def order_item(order_id: str, status: str, items: dict[str, int], total: str, **more: Any) -> dict[str, Any]:
    return {"orderId": order_id, "customerId": f"chaos-r-{order_id}", "status": status, "totalAmount": Decimal(total),
            "items": [{"productId": p, "quantity": q} for p, q in items.items()],
            "createdAt": "2026-01-01T00:00:00+00:00", **more}  # fmt: skip


def consistent_records() -> ChaosRecords:
    """A completed order, one failed by shipping (and replayed), one hung in payment, one out of
    stock, and a poisoned one, each with exactly the records the system leaves."""
    orders = {
        "c1": order_item("c1", "COMPLETED", {"mug": 2}, "24.00"),
        "f1": order_item("f1", "FAILED", {"kettle": 1}, "59.90",
                         failureReason="InjectedFault: injected failure in shipping"),
        "h1": order_item("h1", "FAILED", {"mug": 1}, "12.00",
                         failureReason="States.Timeout: Task timed out after 5 seconds"),
        "s1": order_item("s1", "FAILED", {"grinder": 21}, "2709.00",
                         failureReason="OutOfStockError: not enough stock for grinder"),
        "p1": order_item("p1", "PENDING", {"mug": 1}, "12.00"),
    }  # fmt: skip
    tables = TableSnapshot(
        order_ids=tuple(orders),
        orders=orders,
        payments={
            "c1": {"orderId": "c1", "status": "CHARGED", "amount": Decimal("24.00")},
            "f1": {"orderId": "f1", "status": "REFUNDED", "amount": Decimal("59.90")},
            "h1": {"orderId": "h1", "status": "REFUNDED", "amount": Decimal("12.00")},
        },
        shipments={"c1": {"orderId": "c1", "status": "CREATED"}, "f1": {"orderId": "f1", "status": "VOID"}},
        reservations={
            "c1": {"orderId": "c1", "status": "RESERVED", "items": [{"productId": "mug", "quantity": 2}]},
            "f1": {"orderId": "f1", "status": "RELEASED", "items": [{"productId": "kettle", "quantity": 1}]},
            "h1": {"orderId": "h1", "status": "RELEASED", "items": [{"productId": "mug", "quantity": 1}]},
        },
        stock_before={"mug": 200, "kettle": 30, "grinder": 20},
        top_ups={},
        stock_after={"mug": 198, "kettle": 30, "grinder": 20},
        poisoned=("p1",),
        dead_lettered=("p1",),
    )
    executions = {
        "c1": (SagaExecution("c1", "c1", "SUCCEEDED"),),
        "f1": (SagaExecution("f1", "f1", "FAILED", SHIPPING_FAILED),
               SagaExecution("f1-replay-1", "f1", "FAILED", SHIPPING_FAILED)),
        "h1": (SagaExecution("h1", "h1", "FAILED", PAYMENT_HUNG),),
        "s1": (SagaExecution("s1", "s1", "FAILED", OUT_OF_STOCK),),
    }  # fmt: skip
    return ChaosRecords(
        tables=tables,
        executions=executions,
        outbox=frozenset(orders),
        customer_orders={f"chaos-r-{order_id}": (order_id,) for order_id in orders},
        customer_charges={f"chaos-r-{order_id}": (order_id,) for order_id in ("c1", "f1", "h1")},
        customer_shipments={"chaos-r-c1": ("c1",)},
        # The run's faults, as it set them (rules at the invoke boundary leave nothing in the order)
        faults={"f1": {"fail": "shipping"}, "h1": {"hang": "payment"}, "p1": {"poison": True}},
    )


def broken(records: ChaosRecords) -> dict[str, tuple[str, ...]]:
    verdict = check_records(records)
    return {check.name: check.violations for check in verdict.broken}


def with_tables(records: ChaosRecords, **changes: Any) -> ChaosRecords:
    return replace(records, tables=replace(records.tables, **changes))


def test_consistent_records_hold_every_invariant() -> None:
    verdict = check_records(consistent_records())
    assert verdict.holds, verdict.as_dict()
    assert [c.name for c in verdict.checks if c.skipped] == []
    assert {ONE_SAGA, PUBLISHED, NO_SECOND_ORDER, AT_MOST_ONCE, COMPENSATED, IMPLIED, DEAD_LETTER_CHECK,
            STOCK_CHECK} <= {c.name for c in verdict.checks}  # fmt: skip
    assert verdict.violations_by_order() == {} and verdict.as_dict()["violatingOrders"] == []


def test_a_second_saga_for_an_order_is_caught_with_its_name() -> None:
    records = consistent_records()
    executions = {
        **records.executions,
        "c1": (*records.executions["c1"], SagaExecution("rogue-7", "c1", "SUCCEEDED")),
    }
    assert broken(replace(records, executions=executions)) == {
        ONE_SAGA: ("c1: the saga also ran as rogue-7",)
    }


def test_a_missing_running_or_mismatched_saga_is_caught() -> None:
    records = consistent_records()
    executions = {
        **records.executions,
        "c1": (),
        "h1": (SagaExecution("h1", "h1", "RUNNING"),),
        "s1": (SagaExecution("s1", "s1", "SUCCEEDED"),),
        "p1": (SagaExecution("p1", "p1", "SUCCEEDED"),),
    }
    found = broken(replace(records, executions=executions))
    assert found[ONE_SAGA] == (
        "c1: 0 executions named after the order, expected 1",
        "h1: its saga is RUNNING",
        "s1: its saga SUCCEEDED, the order is FAILED",
        "p1: 1 executions named after the order, expected 0",
    )
    assert found[PUBLISHED] == ("c1: its outbox record was neither published (no saga) nor dead-lettered",)


def test_an_order_without_its_outbox_record_is_caught() -> None:
    records = consistent_records()
    found = broken(replace(records, outbox=records.outbox - {"s1"}))
    assert found == {PUBLISHED: ("s1: no OUTBOX# record",)}


def test_a_second_order_from_one_request_is_caught_naming_both() -> None:
    # GIVEN a repeated POST that made a second order, which was charged too
    records = consistent_records()
    records = replace(
        records,
        customer_orders={**(records.customer_orders or {}), "chaos-r-c1": ("c1", "c2")},
        customer_charges={**(records.customer_charges or {}), "chaos-r-c1": ("c1", "c2")},
    )
    found = broken(records)
    # THEN the second order and its charge are named, with the order the request made
    assert found == {
        NO_SECOND_ORDER: ("c2: an order of customer chaos-r-c1, whose one request made order c1",),
        AT_MOST_ONCE: ("c2: a charge of customer chaos-r-c1, whose one request made order c1",),
    }
    assert check_records(records).violations_by_order() == {"c2": [NO_SECOND_ORDER, AT_MOST_ONCE]}


def test_a_charge_for_another_amount_or_a_reservation_of_other_items_is_caught() -> None:
    # GIVEN the completed order charged twice its total (a charge sent twice), and a reservation
    # that released more than the failed order held
    records = consistent_records()
    tables = records.tables
    payments = {**tables.payments, "c1": {**tables.payments["c1"], "amount": Decimal("48.00")}}
    reservations = dict(tables.reservations or {})
    reservations["f1"] = {**reservations["f1"], "items": [{"productId": "kettle", "quantity": 2}]}
    found = broken(with_tables(records, payments=payments, reservations=reservations))
    assert found[AT_MOST_ONCE] == (
        "c1: charged 48.00 (CHARGED), the order's total is 24.00",
        "f1: reserved {'kettle': 2} (RELEASED), the order is for {'kettle': 1}",
    )
    assert found["every COMPLETED order is charged once, for its total"] == (
        "c1: charged 48.00, total 24.00",
    )


def test_a_failed_order_whose_refund_is_gone_is_caught() -> None:
    # GIVEN the refund of the hung order's late charge removed: the charge stands
    records = consistent_records()
    payments = {**records.tables.payments, "h1": {**records.tables.payments["h1"], "status": "CHARGED"}}
    found = broken(with_tables(records, payments=payments))
    assert found == {
        "no FAILED order keeps a charge, shipment or reservation": ("h1: FAILED but keeps its charge",)
    }


@pytest.mark.parametrize(
    ("steps", "violation"),
    [
        ((*ok("ReserveInventory"), StepRecord("ChargePayment", False, "States.Timeout"),
          *ok("ReleaseInventory", "MarkOrderFailed")),
         "h1: its saga compensated ReleaseInventory, expected RefundPayment → ReleaseInventory "
         "(ChargePayment failed with States.Timeout)"),
        ((*ok("ReserveInventory"), StepRecord("ChargePayment", False, "States.Timeout"),
          *ok("ReleaseInventory", "RefundPayment", "MarkOrderFailed")),
         "h1: its saga compensated ReleaseInventory → RefundPayment, expected RefundPayment → ReleaseInventory "
         "(ChargePayment failed with States.Timeout)"),
        (PAYMENT_HUNG[:-1], "h1: its saga failed without marking the order FAILED"),
    ],
)  # fmt: skip
def test_a_failed_saga_that_compensated_wrongly_is_caught(
    steps: tuple[StepRecord, ...], violation: str
) -> None:
    records = consistent_records()
    executions = {**records.executions, "h1": (SagaExecution("h1", "h1", "FAILED", steps),)}
    found = broken(replace(records, executions=executions))[COMPENSATED]
    assert found == (violation,)


def test_a_compensation_that_failed_is_named() -> None:
    records = consistent_records()
    steps = (*PAYMENT_HUNG[:3], StepRecord("ReleaseInventory", False, "States.TaskFailed"), PAYMENT_HUNG[-1])
    executions = {**records.executions, "h1": (SagaExecution("h1", "h1", "FAILED", steps),)}
    assert broken(replace(records, executions=executions))[COMPENSATED] == (
        "h1: its saga: compensation ReleaseInventory (States.TaskFailed) failed",
    )


def test_an_order_that_ended_otherwise_than_its_faults_imply_is_caught() -> None:
    # GIVEN an order with an injected shipping failure that completed, and one out of stock that
    # asked for less than the stock held
    records = consistent_records()
    records = replace(records, faults={**records.faults, "c1": {"fail": "shipping"}})
    orders = dict(records.tables.orders)
    orders["s1"] = {**orders["s1"], "items": [{"productId": "grinder", "quantity": 2}]}
    found = broken(with_tables(records, orders=orders))
    assert found[IMPLIED] == (
        "c1: COMPLETED; {'fail': 'shipping'}, total 24.00 imply FAILED (InjectedFault: injected failure in shipping)",
        "s1: FAILED (OutOfStockError: not enough stock for grinder); no faults, total 2709.00 imply COMPLETED",
    )


def test_the_checker_takes_an_orders_faults_from_the_run_not_from_the_order_item() -> None:
    # GIVEN a completed order whose item says it was to fail (a field no service writes any more)
    records = consistent_records()
    orders = {**records.tables.orders, "c1": {**records.tables.orders["c1"], "faults": {"fail": "shipping"}}}
    # THEN the checker goes by the faults the run set, and the order ended as they imply
    assert check_records(with_tables(records, orders=orders)).holds
    # AND without the run's faults, a failed order is judged as one that should have completed
    found = broken(replace(records, faults={}))
    assert found[IMPLIED][0] == (
        "f1: FAILED (InjectedFault: injected failure in shipping); no faults, total 59.90 imply COMPLETED"
    )


def test_a_poisoned_order_that_was_not_dead_lettered_is_caught_as_not_ended() -> None:
    records = consistent_records()
    found = broken(with_tables(records, dead_lettered=()))
    assert found["every accepted order is terminal"] == ("p1: PENDING",)
    assert found[IMPLIED] == ("p1: PENDING; {'poison': True}, total 12.00 imply DEAD-LETTERED",)
    assert found[PUBLISHED] == ("p1: its outbox record was neither published (no saga) nor dead-lettered",)


def test_without_the_run_s_customers_or_stock_those_checks_are_skipped_and_said_so() -> None:
    records = replace(consistent_records(), customer_orders=None, customer_charges=None, customer_shipments=None,
                      is_stock_known=False)  # fmt: skip
    verdict = check_records(records)
    assert verdict.holds
    skipped = {c.name: c.skipped for c in verdict.checks if c.skipped}
    assert skipped == {
        NO_SECOND_ORDER: "the run's customers are not known",
        STOCK_CHECK: "the stock before the run was not given",
    }


def test_violations_name_their_orders_with_a_trace_command() -> None:
    records = consistent_records()
    verdict = check_records(replace(records, outbox=records.outbox - {"f1"}))
    assert isinstance(verdict, ChaosVerdict)
    assert verdict.as_dict()["violatingOrders"] == [
        {"orderId": "f1", "invariants": [PUBLISHED], "trace": "sandbox trace f1"}
    ]


# --- the report ----------------------------------------------------------------------------------


def test_the_report_counts_per_fault_and_duplicate_answers_and_fails_on_a_refusal() -> None:
    # GIVEN a run of three orders: one sent twice, one flaky and replayed, one the API refused
    config = ChaosConfig(orders=3, seed=4)
    plan = plan_chaos(CATALOG, replace(config, faults=()))
    twice = PlannedOrder(0, "happy", (), duplicate="concurrent")
    flaky = PlannedOrder(1, "happy", (), {"flaky": {"payment": 1}}, is_replayed=True)
    outcomes = (
        OrderOutcome(
            twice, 1.0, 1.1, "a", None, "COMPLETED", None, 2.0, [ApiAnswer(409, None, "HTTP 409: in flight")]
        ),
        OrderOutcome(flaky, 1.0, 1.1, "b", None, "COMPLETED", None, 2.0),
        OrderOutcome(PlannedOrder(2, "happy", ()), 1.0, None, None, "HTTP 500: boom"),
    )
    verdict = check_records(consistent_records())
    load = Load(outcomes, 1.0, 1.1, 2.0, None, "not measured")
    report = ChaosReport(config, "r", "chaos-r-", plan, load, verdict, {"b": "SUCCEEDED"}, 2.5)
    summary = report.as_dict()
    # THEN outcomes are counted per fault kind, and the repeated request's answer is classified
    assert summary["outcomesByFault"] == {
        "duplicate-request (concurrent)": {"COMPLETED": 1},
        "flaky": {"COMPLETED": 1},
        "none": {"REFUSED": 1},
        "replay": {"COMPLETED": 1},
    }
    assert summary["duplicates"] == {"sent": 1, "inFlight": 1, "others": []}
    assert summary["replays"] == {"count": 1, "ends": {"SUCCEEDED": 1}, "errors": {}}
    assert summary["settleSeconds"] == 0.5
    assert summary["reproduce"] == config.command
    # AND a refused order makes the run fail although every invariant holds
    assert verdict.holds and not report.is_ok
    assert summary["reason"] == "1 order(s) refused by the API" and summary["ok"] is False
