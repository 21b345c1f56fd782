"""The plan of a run: which orders, in what mix, meant to end how, and the stock they need.

A plan is a pure function of the catalog (with its stock), the order count, the mix and a seed:
the same seed and catalog give the same plan.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sandbox.errors import UsageError
from sandbox.orders import SAGA_STEPS

# business: a fifth of the orders fail for business reasons (the load a shop really sees);
# faults: the same, another fifth carry injected faults (--fail, --flaky), and a hundredth an
# outbox record the publisher cannot read (--poison): few, because the engine retries each one
# alone for seconds before dead-lettering it, and the stream behind it waits (as on AWS).
BUSINESS_SHARES = {"out-of-stock": 0.1, "declined": 0.1}
FAULT_SHARES = {**BUSINESS_SHARES, "fail": 0.1, "flaky": 0.1, "poison": 0.01}
MIX_SHARES: dict[str, dict[str, float]] = {"happy": {}, "business": BUSINESS_SHARES, "faults": FAULT_SHARES}
MIXES = tuple(MIX_SHARES)
# Mirrors of the services' rules (services never share code with the operator side; a unit test
# checks these against services/payment/charges.py and services/order_api/models.py).
CHARGE_LIMIT = Decimal("10000.00")
MAX_ITEM_QUANTITY = 1000
MAX_FLAKY_ATTEMPTS = 2  # below the steps' retry budget (3), so a flaky order still completes
TERMINAL_STATUSES = ("COMPLETED", "FAILED")
# What a poisoned order ends as in a run: its record is in the outbox's on-failure queue, its
# saga never started, and its item stays PENDING.
DEAD_LETTERED = "DEAD-LETTERED"
# From how many orders a run has at least one of a kind; other kinds: twice the mix's other kinds.
FIRST_ONE_AT = {"poison": 20}


@dataclass(frozen=True)
class Product:
    """A catalog entry as the inventory table holds it."""

    product_id: str
    price: Decimal
    stock: int


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int
    price: Decimal


@dataclass(frozen=True)
class PlannedOrder:
    """One order of a run and the outcome it is meant to have."""

    index: int
    kind: str  # happy, out-of-stock, declined, fail, flaky or poison
    lines: tuple[OrderLine, ...]
    faults: dict[str, Any] | None = field(default=None, hash=False)
    expected_status: str = "COMPLETED"
    # The start of the order's failureReason ("OutOfStockError", "InjectedFault: injected failure in payment").
    expected_reason: str | None = None
    is_replayed: bool = False  # its saga is started again once it has ended (a redrive)
    duplicate: str | None = None  # the same POST sent again with its key: "after" the first, or "concurrent"

    @property
    def total(self) -> Decimal:
        return sum((line.price * line.quantity for line in self.lines), Decimal("0")).quantize(
            Decimal("0.01")
        )

    @property
    def expected(self) -> str:
        return (
            f"{self.expected_status} ({self.expected_reason})"
            if self.expected_reason
            else self.expected_status
        )

    def payload(self, customer_id: str) -> dict[str, Any]:
        """The POST /orders body."""
        return {
            "customerId": customer_id,
            "items": [
                {"productId": line.product_id, "quantity": line.quantity, "price": float(line.price)}
                for line in self.lines
            ],
        }

    def is_expected(self, status: str | None, reason: str | None) -> bool:
        """Whether a final status and failure reason are the ones this order was meant to end with."""
        if status != self.expected_status:
            return False
        return self.expected_reason is None or (reason or "").startswith(self.expected_reason)

    @property
    def is_poisoned(self) -> bool:
        """Whether its outbox record is unreadable: dead-lettered, and no saga ever starts."""
        return bool(self.faults and self.faults.get("poison"))

    @property
    def is_reserving(self) -> bool:
        """Whether the saga takes this order's items out of stock, if only for a while."""
        if self.kind == "out-of-stock" or self.is_poisoned:
            return False
        return not (self.faults and self.faults.get("fail") == "inventory")


@dataclass(frozen=True)
class BenchPlan:
    """Every order of a run, and the stock the run adds first so that stock never runs short."""

    orders: tuple[PlannedOrder, ...]
    mix: str
    seed: int
    stock: dict[str, int]  # as read before the run
    top_ups: dict[str, int]  # product -> units added before the run (only products that needed some)

    def kind_counts(self) -> dict[str, int]:
        return dict(Counter(order.kind for order in self.orders))

    def expected_counts(self) -> dict[str, int]:
        return dict(Counter(order.expected_status for order in self.orders))


def _kinds(count: int, mix: str, rng: random.Random) -> list[str]:
    """Exact shares (so a small run has every kind), in a seeded random order."""
    kinds: list[str] = []
    shares = MIX_SHARES[mix]
    usual = 2 * sum(1 for kind in shares if kind not in FIRST_ONE_AT)
    for kind, share in shares.items():
        # At least one of each kind once the run is large enough to keep most orders ordinary.
        least = 1 if count >= FIRST_ONE_AT.get(kind, usual) else 0
        kinds += [kind] * max(least, round(count * share))
    kinds = kinds[:count]
    kinds += ["happy"] * (count - len(kinds))
    rng.shuffle(kinds)
    return kinds


def ordinary_lines(catalog: dict[str, Product], rng: random.Random) -> tuple[OrderLine, ...]:
    """One to three products, one or two of each, under the card limit."""
    products = sorted(catalog)
    chosen = rng.sample(products, rng.randint(1, min(3, len(products))))
    lines = [OrderLine(p, rng.randint(1, 2), catalog[p].price) for p in chosen]
    while sum(line.price * line.quantity for line in lines) > CHARGE_LIMIT and len(lines) > 1:
        lines.remove(max(lines, key=lambda line: line.price * line.quantity))
    if lines[0].price * lines[0].quantity > CHARGE_LIMIT:
        lines = [OrderLine(lines[0].product_id, 1, lines[0].price)]
    return tuple(lines)


def sellable_products(catalog: dict[str, Product]) -> dict[str, Product]:
    """The catalog's products one unit of which is under the card limit; none is a UsageError."""
    sellable = {pid: product for pid, product in catalog.items() if product.price <= CHARGE_LIMIT}
    if not sellable:
        raise UsageError("the inventory table holds none of the demo products", hint="run `sandbox reset`")
    return sellable


def declined_line(sellable: dict[str, Product]) -> OrderLine:
    """Just enough of the dearest product to go over the card limit."""
    priciest = max(sellable.values(), key=lambda product: (product.price, product.product_id))
    quantity = int(CHARGE_LIMIT / priciest.price) + 1
    if quantity > MAX_ITEM_QUANTITY:
        raise UsageError(f"no demo product is dear enough to exceed the {CHARGE_LIMIT} card limit")
    return OrderLine(priciest.product_id, quantity, priciest.price)


def reserved_units(orders: Iterable[PlannedOrder | None]) -> Counter[str]:
    """Units of each product that the reserving orders may hold at the same time."""
    needed: Counter[str] = Counter()
    for order in orders:
        if order is not None and order.is_reserving:
            for line in order.lines:
                needed[line.product_id] += line.quantity
    return needed


def plan_top_ups(catalog: dict[str, Product], orders: Iterable[PlannedOrder | None]) -> dict[str, int]:
    """Units to add per product so that every reserving order may hold its items at the same time."""
    needed = reserved_units(orders)
    stock = {pid: product.stock for pid, product in catalog.items()}
    return {pid: needed[pid] - stock[pid] for pid in sorted(needed) if needed[pid] > stock[pid]}


def out_of_stock_line(
    catalog: dict[str, Product], sellable: dict[str, Product], top_ups: dict[str, int]
) -> OrderLine:
    """One more unit than the scarcest product holds after the top-ups: always short."""
    # Stock never rises above what it is after the top-ups, so one more than that is always short.
    projected = {pid: catalog[pid].stock + top_ups.get(pid, 0) for pid in sellable}
    scarce = min(projected, key=lambda pid: (projected[pid], pid))
    if projected[scarce] + 1 > MAX_ITEM_QUANTITY:
        raise UsageError(
            f"every demo product has {MAX_ITEM_QUANTITY} or more in stock, the API's limit per item, "
            "so no order can run out of stock",
            hint="`sandbox reset` restores the demo stock",
        )
    return OrderLine(scarce, projected[scarce] + 1, sellable[scarce].price)


def plan_orders(catalog: dict[str, Product], count: int, mix: str, seed: int) -> BenchPlan:
    """The orders of a run: a pure function of the catalog (with its stock), count, mix and seed."""
    if mix not in MIXES:
        raise UsageError(f"--mix {mix!r}: choose one of {', '.join(MIXES)}")
    sellable = sellable_products(catalog)
    rng = random.Random(seed)
    orders: list[PlannedOrder | None] = []
    kinds = _kinds(count, mix, rng)
    for index, kind in enumerate(kinds):
        if kind == "out-of-stock":
            orders.append(None)  # its quantity depends on the stock after the top-ups, below
        elif kind == "declined":
            orders.append(
                PlannedOrder(
                    index,
                    kind,
                    (declined_line(sellable),),
                    expected_status="FAILED",
                    expected_reason="PaymentDeclinedError",
                )
            )
        elif kind == "fail":
            step = rng.choice(SAGA_STEPS)
            orders.append(
                PlannedOrder(
                    index,
                    kind,
                    ordinary_lines(sellable, rng),
                    {"fail": step},
                    expected_status="FAILED",
                    expected_reason=f"InjectedFault: injected failure in {step}",
                )
            )
        elif kind == "poison":
            orders.append(
                PlannedOrder(
                    index,
                    kind,
                    ordinary_lines(sellable, rng),
                    {"poison": True},
                    expected_status=DEAD_LETTERED,
                )
            )
        elif kind == "flaky":
            faults = {"flaky": {rng.choice(SAGA_STEPS): rng.randint(1, MAX_FLAKY_ATTEMPTS)}}
            orders.append(PlannedOrder(index, kind, ordinary_lines(sellable, rng), faults))
        else:
            orders.append(PlannedOrder(index, kind, ordinary_lines(sellable, rng)))
    top_ups = plan_top_ups(catalog, orders)
    if None in orders:
        line = out_of_stock_line(catalog, sellable, top_ups)
        orders = [
            order
            or PlannedOrder(
                index, "out-of-stock", (line,), expected_status="FAILED", expected_reason="OutOfStockError"
            )
            for index, order in enumerate(orders)
        ]
    stock = {pid: product.stock for pid, product in catalog.items()}
    return BenchPlan(tuple(o for o in orders if o is not None), mix, seed, stock, top_ups)


@dataclass(frozen=True)
class BenchConfig:
    """What `sandbox bench` was asked to do."""

    orders: int = 100
    concurrency: int = 4
    rate: float | None = None  # orders per second for all clients together; None: as fast as they go
    mix: str = "happy"
    seed: int = 1
    wait_seconds: float = 120  # after the last order is placed, until every one is terminal

    def validate(self) -> None:
        if self.orders < 1:
            raise UsageError(f"--orders {self.orders}: place at least one order")
        if self.concurrency < 1:
            raise UsageError(f"--concurrency {self.concurrency}: at least one client")
        if self.rate is not None and self.rate <= 0:
            raise UsageError(f"--rate {self.rate:g}: orders per second must be above 0")
        if self.mix not in MIXES:
            raise UsageError(f"--mix {self.mix!r}: choose one of {', '.join(MIXES)}")
        if self.wait_seconds <= 0:
            raise UsageError(f"--wait-seconds {self.wait_seconds:g}: must be above 0")
