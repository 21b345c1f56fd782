"""The chaos checker: whether a run's records prove that nothing was lost or done twice.

``check`` reads the system's own records (``read_records``) and judges them (``check_records``):
the tables' end state (the invariants ``sandbox bench`` checks too), every saga execution and the
history of every failed one, the outbox records and the on-failure queue, and, per customer, every
order, charge and shipment. It never asks what the run meant to happen: an order's expected end is
what its own item (its faults, total and lines) implies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Unpack

from sandbox.bench import DEAD_LETTERED, STOCK_CHECK, Check, TableSnapshot, Verdict, check_invariants
from sandbox.chaos.outcomes import implied_outcome, is_outcome
from sandbox.chaos.records import ChaosRecords, RunBaseline, SagaExecution, StepRecord, read_records
from sandbox.stack import LocalStack
from sandbox.trace import COMPENSATION_OF

ONE_SAGA = "one saga execution per order (plus deliberate replays), each ended as its order did"
PUBLISHED = "every outbox record was published or dead-lettered"
NO_SECOND_ORDER = "duplicate POSTs created no second order"
AT_MOST_ONCE = "at most one reservation, charge and shipment per order, each for its own items and total"
COMPENSATED = "every failed saga compensated what it had done, in reverse order"
IMPLIED = "every order ended as its faults and the business rules imply"
FORWARD_STEPS = ("ReserveInventory", "ChargePayment", "CreateShipment")
COMPENSATION_FOR = {forward: compensation for compensation, forward in COMPENSATION_OF.items()}
# A step that fails with one of these checked and did nothing: only the steps before it are undone.
# Any other failure is uncertain (its effect may have landed, or may still): it is undone too.
BUSINESS_ERRORS = frozenset({"OutOfStockError", "PaymentDeclinedError"})
EXECUTION_ENDS = {"COMPLETED": "SUCCEEDED", "FAILED": "FAILED"}


@dataclass(frozen=True)
class ChaosVerdict(Verdict):
    """Every invariant and the orders that break it."""

    order_ids: tuple[str, ...] = ()

    def violations_by_order(self) -> dict[str, list[str]]:
        """Order id -> the invariants it breaks (a violation names its order first)."""
        ours = set(self.order_ids)
        found: dict[str, list[str]] = {}
        for check in self.broken:
            for violation in check.violations:
                subject = violation.split(":", 1)[0]
                if subject in ours or check.name in (NO_SECOND_ORDER, AT_MOST_ONCE):
                    names = found.setdefault(subject, [])
                    if check.name not in names:
                        names.append(check.name)
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "violatingOrders": [
                {"orderId": order_id, "invariants": names, "trace": f"sandbox trace {order_id}"}
                for order_id, names in self.violations_by_order().items()
            ],
        }


def _check(name: str, violations: Iterable[str]) -> Check:
    found = tuple(violations)
    return Check(name, not found, found)


def _amount(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _dead_lettered(tables: TableSnapshot) -> set[str]:
    return set(tables.dead_lettered or ())


def _label(execution: SagaExecution) -> str:
    return "its saga" if execution.is_own else f"execution {execution.name}"


def check_sagas(records: ChaosRecords) -> Check:
    """One execution named after each published order, none for a poisoned one; replays aside, no other."""
    wrong = []
    for order_id in records.tables.order_ids:
        item = records.tables.orders.get(order_id, {})
        executions = records.executions.get(order_id, ())
        own = sum(1 for e in executions if e.is_own)
        expected = 0 if records.faults_of(order_id).get("poison") else 1
        if own != expected:
            wrong.append(f"{order_id}: {own} executions named after the order, expected {expected}")
        strays = [e.name for e in executions if not e.is_own and not e.is_replay]
        if strays:
            wrong.append(f"{order_id}: the saga also ran as {', '.join(strays)}")
        end = EXECUTION_ENDS.get(str(item.get("status")))
        for execution in executions:
            if execution.status not in EXECUTION_ENDS.values():
                wrong.append(f"{order_id}: {_label(execution)} is {execution.status}")
            elif end and execution.status != end:
                wrong.append(
                    f"{order_id}: {_label(execution)} {execution.status}, the order is {item['status']}"
                )
    return _check(ONE_SAGA, wrong)


def check_outbox(records: ChaosRecords) -> Check:
    """Every order has its outbox record, and its saga started or its record is in the on-failure queue."""
    dead = _dead_lettered(records.tables)
    wrong = []
    for order_id in records.tables.order_ids:
        if order_id not in records.outbox:
            wrong.append(f"{order_id}: no OUTBOX# record")
        elif order_id not in dead and not any(e.is_own for e in records.executions.get(order_id, ())):
            wrong.append(f"{order_id}: its outbox record was neither published (no saga) nor dead-lettered")
    return _check(PUBLISHED, wrong)


def _accepted_by_customer(tables: TableSnapshot) -> dict[str, str]:
    return {str(item.get("customerId")): order_id for order_id, item in tables.orders.items()}


def _strays(recorded: dict[str, tuple[str, ...]], accepted: dict[str, str], what: str) -> list[str]:
    """A violation for each recorded order id that is not its customer's one accepted order."""
    wrong = []
    for customer, ids in sorted(recorded.items()):
        own = accepted.get(customer)
        for order_id in ids:
            if order_id == own:
                continue
            if own:
                wrong.append(f"{order_id}: {what} of customer {customer}, whose one request made order {own}")
            else:
                wrong.append(f"{order_id}: {what} of customer {customer}, never accepted by the API")
    return wrong


def check_second_orders(records: ChaosRecords) -> Check:
    """Each of the run's customers (one request each, however often sent) has one order."""
    if records.customer_orders is None:
        return Check(NO_SECOND_ORDER, True, skipped="the run's customers are not known")
    accepted = _accepted_by_customer(records.tables)
    return _check(NO_SECOND_ORDER, _strays(records.customer_orders, accepted, "an order"))


def _quantities(lines: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counted: Counter[str] = Counter()
    for line in lines:
        counted[str(line["productId"])] += int(line["quantity"])
    return dict(counted)


def check_effects(records: ChaosRecords) -> Check:
    """No charge or shipment beyond the order's own, and each record is for the order's total and items."""
    tables = records.tables
    accepted = _accepted_by_customer(tables)
    wrong = []
    if records.customer_charges is not None:
        wrong += _strays(records.customer_charges, accepted, "a charge")
    if records.customer_shipments is not None:
        wrong += _strays(records.customer_shipments, accepted, "a shipment")
    for order_id in tables.order_ids:
        order = tables.orders.get(order_id)
        if order is None:
            continue
        charge = tables.payments.get(order_id, {})
        if charge.get("status") in ("CHARGED", "REFUNDED"):
            amount, total = _amount(charge.get("amount")), _amount(order.get("totalAmount"))
            if amount != total:
                wrong.append(
                    f"{order_id}: charged {amount} ({charge['status']}), the order's total is {total}"
                )
        reservation = (tables.reservations or {}).get(order_id, {})
        if reservation.get("status") in ("RESERVED", "RELEASED"):
            held, ordered = _quantities(reservation.get("items", [])), _quantities(order.get("items", []))
            if held != ordered:
                wrong.append(
                    f"{order_id}: reserved {held} ({reservation['status']}), the order is for {ordered}"
                )
    return _check(AT_MOST_ONCE, wrong)


def expected_compensations(steps: Iterable[StepRecord]) -> list[str]:
    """The compensations a failed execution owes: of every step done, and of one that failed uncertainly."""
    owed = []
    for step in steps:
        if step.name not in FORWARD_STEPS:
            continue
        if step.is_succeeded or step.error not in BUSINESS_ERRORS:
            owed.append(step.name)
    return [COMPENSATION_FOR[name] for name in sorted(owed, key=FORWARD_STEPS.index, reverse=True)]


def check_compensations(records: ChaosRecords) -> Check:
    """Every FAILED execution undid what it had done (and what it may have done), in reverse order."""
    wrong = []
    for order_id in records.tables.order_ids:
        for execution in records.executions.get(order_id, ()):
            if execution.status != "FAILED":
                continue
            steps = execution.steps or ()
            expected = expected_compensations(steps)
            ran = [step for step in steps if step.name in COMPENSATION_OF]
            names = [step.name for step in ran]
            failed = next((s for s in steps if s.name in FORWARD_STEPS and not s.is_succeeded), None)
            cause = f" ({failed.name} failed with {failed.error})" if failed else ""
            if names != expected:
                wrong.append(
                    f"{order_id}: {_label(execution)} compensated {' → '.join(names) or 'nothing'}, "
                    f"expected {' → '.join(expected) or 'nothing'}{cause}"
                )
            unfinished = [f"{step.name} ({step.error})" for step in ran if not step.is_succeeded]
            if unfinished:
                wrong.append(f"{order_id}: {_label(execution)}: compensation {', '.join(unfinished)} failed")
            if not any(step.name == "MarkOrderFailed" and step.is_succeeded for step in steps):
                wrong.append(f"{order_id}: {_label(execution)} failed without marking the order FAILED")
    return _check(COMPENSATED, wrong)


def check_outcomes(records: ChaosRecords) -> Check:
    """Each order's end is what its faults, its total and its lines (against the stock) imply."""
    tables = records.tables
    dead = _dead_lettered(tables)
    wrong = []
    for order_id in tables.order_ids:
        item = tables.orders.get(order_id)
        if item is None:
            wrong.append(f"{order_id}: no order item")
            continue
        status = DEAD_LETTERED if order_id in dead else item.get("status")
        reason = item.get("failureReason")
        lines = _quantities(item.get("items", []))
        if records.is_stock_known:
            is_short = any(
                quantity > tables.stock_before.get(pid, 0) + tables.top_ups.get(pid, 0)
                for pid, quantity in lines.items()
            )
        else:  # no stock to judge by: a shortage is taken as the business answer it claims to be
            is_short = str(reason or "").startswith("OutOfStockError")
        expected = implied_outcome(records.faults_of(order_id), _amount(item.get("totalAmount", 0)), is_short)
        if not is_outcome(expected, status, reason):
            faults = dict(records.faults_of(order_id)) or "no faults"
            implied = f"{expected[0]} ({expected[1]})" if expected[1] else expected[0]
            got = f"{status} ({reason})" if reason else str(status)
            wrong.append(
                f"{order_id}: {got}; {faults}, total {_amount(item.get('totalAmount', 0))} imply {implied}"
            )
    return _check(IMPLIED, wrong)


def check_records(records: ChaosRecords) -> ChaosVerdict:
    """Judge a run's records: every invariant, with the orders that break each."""
    tables = records.tables
    checks = list(check_invariants(tables).checks)
    if not records.is_stock_known:
        checks = [
            Check(STOCK_CHECK, True, skipped="the stock before the run was not given")
            if c.name == STOCK_CHECK
            else c
            for c in checks
        ]
    checks[1:1] = [check_sagas(records), check_outbox(records)]
    checks += [
        check_second_orders(records),
        check_effects(records),
        check_compensations(records),
        check_outcomes(records),
    ]
    return ChaosVerdict(tuple(checks), tables.order_ids)


def check(
    stack: LocalStack, region: str, order_ids: Iterable[str], **baseline: Unpack[RunBaseline]
) -> ChaosVerdict:
    """Read what the system recorded about these accepted orders and judge it (see ``RunBaseline``)."""
    return check_records(read_records(stack, region, order_ids, **baseline))
