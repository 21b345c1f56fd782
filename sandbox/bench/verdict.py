"""The verdict of a run, read from the tables and the on-failure queue alone (so a chaos runner can reuse it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox.bench.plan import TERMINAL_STATUSES
from sandbox.bench.tables import TableSnapshot

# What a table's item status means "this order still holds something"; any other status
# (REFUNDED, CANCELLED, RELEASED, VOID tombstones of compensations) holds nothing.
HELD_STATUSES = {"payments": "CHARGED", "shipments": "CREATED", "reservations": "RESERVED"}
SHOWN_VIOLATIONS = 10
DEAD_LETTER_CHECK = "the on-failure queue holds exactly the poisoned orders"
STOCK_CHECK = "stock = before + top-up − bought by COMPLETED orders"


@dataclass(frozen=True)
class Check:
    """One invariant, whether it holds, and the orders or products that break it."""

    name: str
    holds: bool
    violations: tuple[str, ...] = ()
    skipped: str | None = None  # why it was not checked
    subjects: tuple[str, ...] = ()  # what it found, where a reader wants the list (the dead-lettered orders)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "holds": self.holds,
            "skipped": self.skipped,
            "violations": list(self.violations),
            "subjects": list(self.subjects),
        }


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]

    @property
    def holds(self) -> bool:
        return all(check.holds for check in self.checks)

    @property
    def broken(self) -> list[Check]:
        return [check for check in self.checks if not check.holds]

    def as_dict(self) -> dict[str, Any]:
        return {"holds": self.holds, "checks": [check.as_dict() for check in self.checks]}


def _check(name: str, violations: list[str], skipped: str | None = None) -> Check:
    return Check(name, not violations, tuple(violations), skipped)


def _amount(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _check_dead_letters(snapshot: TableSnapshot) -> Check:
    """The run's orders in the on-failure queue are its poisoned ones, each in one letter."""
    if snapshot.dead_lettered is None:
        return Check(DEAD_LETTER_CHECK, True, skipped="the stack has no OutboxFailureQueueUrl output")
    letters = Counter(snapshot.dead_lettered)
    poisoned = set(snapshot.poisoned)
    wrong = [
        f"{order_id}: poisoned, not in the on-failure queue" for order_id in sorted(poisoned - set(letters))
    ]
    wrong += [
        f"{order_id}: in the on-failure queue, not poisoned" for order_id in sorted(set(letters) - poisoned)
    ]
    wrong += [f"{order_id}: in {count} letters" for order_id, count in sorted(letters.items()) if count > 1]
    return Check(DEAD_LETTER_CHECK, not wrong, tuple(wrong), subjects=tuple(sorted(letters)))


def check_invariants(snapshot: TableSnapshot) -> Verdict:
    """Whether the tables show a consistent end state for every accepted order."""
    orders = snapshot.orders
    status = {order_id: orders.get(order_id, {}).get("status") for order_id in snapshot.order_ids}
    # A poisoned order ends with its record in the on-failure queue; its item stays PENDING.
    dead_lettered = set(snapshot.poisoned) & set(snapshot.dead_lettered or ())
    completed = [order_id for order_id, value in status.items() if value == "COMPLETED"]
    failed = [order_id for order_id, value in status.items() if value == "FAILED"]

    def held(table: dict[str, dict[str, Any]] | None, name: str, order_id: str) -> bool:
        return table is not None and table.get(order_id, {}).get("status") == HELD_STATUSES[name]

    checks = [
        _check(
            "every accepted order is terminal",
            [
                f"{order_id}: {value or 'no order item'}"
                for order_id, value in status.items()
                if value not in TERMINAL_STATUSES and order_id not in dead_lettered
            ],
        ),
    ]
    kept = []
    for order_id in failed:
        holding = [
            what
            for what, name, table in (
                ("charge", "payments", snapshot.payments),
                ("shipment", "shipments", snapshot.shipments),
                ("reservation", "reservations", snapshot.reservations),
            )
            if held(table, name, order_id)
        ]
        if holding:
            kept.append(f"{order_id}: FAILED but keeps its {' and '.join(holding)}")
    if snapshot.reservations is None:
        checks.append(_check("no FAILED order keeps a charge or shipment", kept))
        checks.append(
            Check(
                "no FAILED order keeps a reservation",
                True,
                skipped="the stack has no ReservationsTableName output",
            )
        )
    else:
        checks.append(_check("no FAILED order keeps a charge, shipment or reservation", kept))
    uncharged = []
    for order_id in completed:
        payment = snapshot.payments.get(order_id)
        if payment is None or payment.get("status") != "CHARGED":
            uncharged.append(
                f"{order_id}: COMPLETED, charge {payment.get('status') if payment else 'missing'}"
            )
        elif _amount(payment.get("amount")) != _amount(orders[order_id].get("totalAmount")):
            uncharged.append(
                f"{order_id}: charged {_amount(payment.get('amount'))}, total {_amount(orders[order_id].get('totalAmount'))}"
            )
    checks.append(_check("every COMPLETED order is charged once, for its total", uncharged))
    unshipped = [
        f"{order_id}: COMPLETED, shipment {snapshot.shipments[order_id].get('status') if order_id in snapshot.shipments else 'missing'}"
        for order_id in completed
        if snapshot.shipments.get(order_id, {}).get("status") != "CREATED"
    ]
    checks.append(_check("every COMPLETED order is shipped once", unshipped))
    bought: Counter[str] = Counter()
    for order_id in completed:
        for line in orders[order_id].get("items", []):
            bought[line["productId"]] += int(line["quantity"])
    stock_errors = []
    for product in sorted(set(snapshot.stock_before) | set(bought)):
        before = snapshot.stock_before.get(product, 0)
        expected = before + snapshot.top_ups.get(product, 0) - bought[product]
        actual = snapshot.stock_after.get(product)
        if actual != expected:
            stock_errors.append(
                f"{product}: stock {actual}, expected {expected} "
                f"(before {before} + top-up {snapshot.top_ups.get(product, 0)} − bought {bought[product]})"
            )
    checks.append(_check(STOCK_CHECK, stock_errors))
    checks.append(_check_dead_letters(snapshot))
    return Verdict(tuple(checks))
