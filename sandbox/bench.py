"""Load runs against the local stack: many orders at once, their outcomes, the engine's cost, a verdict.

A run plans its orders from a seed (the same seed and catalog give the same plan), places them
through the HTTP API from several concurrent clients, and watches them reach a terminal status by
reading the orders table directly, never through the API: polling ``GET /orders`` would invoke the
API function and load the engine being measured. The verdict (``check_invariants``) is read from
the tables alone, so a chaos runner can reuse it.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from sandbox.catalog import DEMO_PRODUCTS
from sandbox.errors import OrderError, SandboxError, UsageError, WaitTimeoutError
from sandbox.orders import SAGA_STEPS, OrdersClient
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

# business: a fifth of the orders fail for business reasons (the load a shop really sees);
# faults: the same, and another fifth carry injected faults (--fail, --flaky).
BUSINESS_SHARES = {"out-of-stock": 0.1, "declined": 0.1}
FAULT_SHARES = {**BUSINESS_SHARES, "fail": 0.1, "flaky": 0.1}
MIX_SHARES: dict[str, dict[str, float]] = {"happy": {}, "business": BUSINESS_SHARES, "faults": FAULT_SHARES}
MIXES = tuple(MIX_SHARES)
# Mirrors of the services' rules (services never share code with the operator side; a unit test
# checks these against services/payment/charges.py and services/order_api/models.py).
CHARGE_LIMIT = Decimal("10000.00")
MAX_ITEM_QUANTITY = 1000
MAX_FLAKY_ATTEMPTS = 2  # below the steps' retry budget (3), so a flaky order still completes
TERMINAL_STATUSES = ("COMPLETED", "FAILED")
# What a table's item status means "this order still holds something"; any other status
# (REFUNDED, CANCELLED, RELEASED, VOID tombstones of compensations) holds nothing.
HELD_STATUSES = {"payments": "CHARGED", "shipments": "CREATED", "reservations": "RESERVED"}
POLL_INTERVAL = 0.1  # seconds between reads of the pending orders (growing to POLL_MAX_INTERVAL)
POLL_MAX_INTERVAL = 0.25
SAMPLE_INTERVAL = 0.2  # seconds between samples of the engine's process tree
BATCH_GET_LIMIT = 100  # keys per BatchGetItem call
SHOWN_VIOLATIONS = 10

Progress = Callable[["BenchProgress"], None]


# --- the plan ------------------------------------------------------------------------------------


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
    kind: str  # happy, out-of-stock, declined, fail or flaky
    lines: tuple[OrderLine, ...]
    faults: dict[str, Any] | None = field(default=None, hash=False)
    expected_status: str = "COMPLETED"
    # The start of the order's failureReason ("OutOfStockError", "InjectedFailure: injected failure in payment").
    expected_reason: str | None = None

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
        body: dict[str, Any] = {
            "customerId": customer_id,
            "items": [
                {"productId": line.product_id, "quantity": line.quantity, "price": float(line.price)}
                for line in self.lines
            ],
        }
        if self.faults:
            body["faults"] = self.faults
        return body

    def is_expected(self, status: str | None, reason: str | None) -> bool:
        """Whether a final status and failure reason are the ones this order was meant to end with."""
        if status != self.expected_status:
            return False
        return self.expected_reason is None or (reason or "").startswith(self.expected_reason)

    @property
    def is_reserving(self) -> bool:
        """Whether the saga takes this order's items out of stock, if only for a while."""
        return self.kind != "out-of-stock" and not (self.faults and self.faults.get("fail") == "inventory")


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
    for kind, share in shares.items():
        # At least one of each kind once the run is large enough to keep most orders ordinary.
        least = 1 if count >= 2 * len(shares) else 0
        kinds += [kind] * max(least, round(count * share))
    kinds = kinds[:count]
    kinds += ["happy"] * (count - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _ordinary_lines(catalog: dict[str, Product], rng: random.Random) -> tuple[OrderLine, ...]:
    """One to three products, one or two of each, under the card limit."""
    products = sorted(catalog)
    chosen = rng.sample(products, rng.randint(1, min(3, len(products))))
    lines = [OrderLine(p, rng.randint(1, 2), catalog[p].price) for p in chosen]
    while sum(line.price * line.quantity for line in lines) > CHARGE_LIMIT and len(lines) > 1:
        lines.remove(max(lines, key=lambda line: line.price * line.quantity))
    if lines[0].price * lines[0].quantity > CHARGE_LIMIT:
        lines = [OrderLine(lines[0].product_id, 1, lines[0].price)]
    return tuple(lines)


def plan_orders(catalog: dict[str, Product], count: int, mix: str, seed: int) -> BenchPlan:
    """The orders of a run: a pure function of the catalog (with its stock), count, mix and seed."""
    if mix not in MIXES:
        raise UsageError(f"--mix {mix!r}: choose one of {', '.join(MIXES)}")
    sellable = {pid: product for pid, product in catalog.items() if product.price <= CHARGE_LIMIT}
    if not sellable:
        raise UsageError("the inventory table holds none of the demo products", hint="run `sandbox reset`")
    rng = random.Random(seed)
    orders: list[PlannedOrder | None] = []
    kinds = _kinds(count, mix, rng)
    priciest = max(sellable.values(), key=lambda product: (product.price, product.product_id))
    for index, kind in enumerate(kinds):
        if kind == "out-of-stock":
            orders.append(None)  # its quantity depends on the stock after the top-ups, below
        elif kind == "declined":
            quantity = int(CHARGE_LIMIT / priciest.price) + 1
            if quantity > MAX_ITEM_QUANTITY:
                raise UsageError(f"no demo product is dear enough to exceed the {CHARGE_LIMIT} card limit")
            orders.append(
                PlannedOrder(
                    index,
                    kind,
                    (OrderLine(priciest.product_id, quantity, priciest.price),),
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
                    _ordinary_lines(sellable, rng),
                    {"fail": step},
                    expected_status="FAILED",
                    expected_reason=f"InjectedFailure: injected failure in {step}",
                )
            )
        elif kind == "flaky":
            faults = {"flaky": {rng.choice(SAGA_STEPS): rng.randint(1, MAX_FLAKY_ATTEMPTS)}}
            orders.append(PlannedOrder(index, kind, _ordinary_lines(sellable, rng), faults))
        else:
            orders.append(PlannedOrder(index, kind, _ordinary_lines(sellable, rng)))
    # Every reserving order may hold its items at the same time: stock covers all of them at once.
    needed: Counter[str] = Counter()
    for order in orders:
        if order is not None and order.is_reserving:
            for line in order.lines:
                needed[line.product_id] += line.quantity
    stock = {pid: product.stock for pid, product in catalog.items()}
    top_ups = {pid: needed[pid] - stock[pid] for pid in sorted(needed) if needed[pid] > stock[pid]}
    if None in orders:
        # Stock never rises above what it is after the top-ups, so one more than that is always short.
        projected = {pid: stock[pid] + top_ups.get(pid, 0) for pid in sellable}
        scarce = min(projected, key=lambda pid: (projected[pid], pid))
        if projected[scarce] + 1 > MAX_ITEM_QUANTITY:
            raise UsageError(
                f"every demo product has {MAX_ITEM_QUANTITY} or more in stock, the API's limit per item, "
                "so no order can run out of stock",
                hint="`sandbox reset` restores the demo stock",
            )
        line = OrderLine(scarce, projected[scarce] + 1, sellable[scarce].price)
        orders = [
            order
            or PlannedOrder(
                index, "out-of-stock", (line,), expected_status="FAILED", expected_reason="OutOfStockError"
            )
            for index, order in enumerate(orders)
        ]
    return BenchPlan(tuple(o for o in orders if o is not None), mix, seed, stock, top_ups)


# --- percentiles ---------------------------------------------------------------------------------


def percentile(values: Iterable[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= share <= 1:
        raise ValueError(f"share {share} is not between 0 and 1")
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def summarize_latencies(seconds: list[float]) -> dict[str, float] | None:
    """p50, p95, p99 and max in milliseconds (None without values)."""
    if not seconds:
        return None
    return {
        "p50": round(percentile(seconds, 0.5) * 1000, 1),
        "p95": round(percentile(seconds, 0.95) * 1000, 1),
        "p99": round(percentile(seconds, 0.99) * 1000, 1),
        "max": round(max(seconds) * 1000, 1),
    }


# --- the engine's processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessTreeSample:
    """CPU and memory of a process and all its descendants at one moment."""

    cpu_seconds: float  # user + system, including children they have reaped
    rss_bytes: int  # summed over the processes (pages they share count more than once)
    descendants: int


def _read_stats(proc_dir: Path) -> Iterator[tuple[int, list[str]]]:
    """(pid, fields after the command name) of every process; vanished ones are skipped."""
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        yield int(entry.name), text[text.rfind(")") + 2 :].split()


def read_process_tree(root_pid: int, proc_dir: Path = Path("/proc")) -> ProcessTreeSample | None:
    """CPU seconds, RSS and descendant count of ``root_pid`` and its descendants; None if it is gone."""
    stats = dict(_read_stats(proc_dir))
    if root_pid not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent pid
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree += frontier
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    # utime, stime, cutime, cstime: a worker that exited and was reaped lives on in its parent's c*time.
    cpu = sum(sum(int(value) for value in stats[pid][11:15]) for pid in tree)
    rss = sum(int(stats[pid][21]) for pid in tree)
    return ProcessTreeSample(cpu / ticks, rss * page, len(tree) - 1)


@dataclass(frozen=True)
class ResourceUsage:
    """What the engine and its workers cost during a run."""

    cpu_seconds: float
    peak_rss_bytes: int
    peak_workers: int
    workers_before: int
    samples: int

    def as_dict(self, orders: int) -> dict[str, Any]:
        return {
            "cpuSeconds": round(self.cpu_seconds, 2),
            "cpuSecondsPerOrder": round(self.cpu_seconds / orders, 4) if orders else None,
            "peakRssMb": round(self.peak_rss_bytes / 2**20, 1),
            "peakWorkers": self.peak_workers,
            "workersBefore": self.workers_before,
            "samples": self.samples,
        }


class ResourceSampler:
    """Samples a process tree every SAMPLE_INTERVAL seconds on a thread, keeping the peaks."""

    def __init__(self, root_pid: int, interval: float = SAMPLE_INTERVAL, proc_dir: Path = Path("/proc")):
        self.root_pid, self.interval, self.proc_dir = root_pid, interval, proc_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-resource-sampler", daemon=True)
        self._first: ProcessTreeSample | None = None
        self._peak_rss = self._peak_workers = self._samples = 0

    @property
    def samples(self) -> int:
        return self._samples

    def _sample(self) -> ProcessTreeSample | None:
        sample = read_process_tree(self.root_pid, self.proc_dir)
        if sample is not None:
            self._samples += 1
            self._peak_rss = max(self._peak_rss, sample.rss_bytes)
            self._peak_workers = max(self._peak_workers, sample.descendants)
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval):  # a sampling period, not a wait for a condition
            self._sample()

    def start(self) -> None:
        self._first = self._sample()
        if self._first is None:
            raise SandboxError(f"the engine process {self.root_pid} is not running")
        self._thread.start()

    def stop(self) -> ResourceUsage:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        last = self._sample()
        first = self._first
        if first is None or last is None:
            raise SandboxError(f"the engine process {self.root_pid} exited during the run")
        return ResourceUsage(
            last.cpu_seconds - first.cpu_seconds,
            self._peak_rss,
            self._peak_workers,
            first.descendants,
            self._samples,
        )


# --- tables --------------------------------------------------------------------------------------


@cache
def _deserializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer  # boto3 on first use: the CLI starts without it

    return TypeDeserializer()


def _item(raw: dict[str, Any]) -> dict[str, Any]:
    """A low-level item as Python values (numbers stay Decimal, for exact amounts)."""
    return {key: _deserializer().deserialize(value) for key, value in raw.items()}


def batch_get(
    dynamodb: Any,
    table: str,
    keys: list[dict[str, Any]],
    projection: str | None = None,
    names: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every item of ``keys`` that exists (consistent reads, 100 keys a call, unprocessed keys re-asked)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request: dict[str, Any] = {"Keys": keys[start : start + BATCH_GET_LIMIT], "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
        if names:
            request["ExpressionAttributeNames"] = names
        while request["Keys"]:
            response = dynamodb.batch_get_item(RequestItems={table: request})
            found += [_item(raw) for raw in response["Responses"].get(table, [])]
            request["Keys"] = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
    return found


def order_key(order_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"ORDER#{order_id}"}, "sk": {"S": "ORDER"}}


def read_catalog(dynamodb: Any, table: str) -> dict[str, Product]:
    """The demo products in the inventory table, with their current stock."""
    items = batch_get(dynamodb, table, [{"productId": {"S": pid}} for pid in DEMO_PRODUCTS])
    return {
        item["productId"]: Product(item["productId"], Decimal(item["price"]), int(item["stock"]))
        for item in items
        if "price" in item and "stock" in item
    }


def read_stock(dynamodb: Any, table: str, products: Iterable[str]) -> dict[str, int]:
    items = batch_get(dynamodb, table, [{"productId": {"S": pid}} for pid in sorted(set(products))])
    return {item["productId"]: int(item.get("stock", 0)) for item in items}


def top_up_stock(dynamodb: Any, table: str, top_ups: dict[str, int]) -> None:
    """Add the planned units to each product's stock."""
    for product_id, units in top_ups.items():
        dynamodb.update_item(
            TableName=table,
            Key={"productId": {"S": product_id}},
            UpdateExpression="ADD stock :units",
            ConditionExpression="attribute_exists(productId)",
            ExpressionAttributeValues={":units": {"N": str(units)}},
        )


@dataclass(frozen=True)
class TableSnapshot:
    """What the tables say about a run's orders once it is over (items keyed by order id)."""

    order_ids: tuple[str, ...]  # every order the API accepted
    orders: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    shipments: dict[str, dict[str, Any]]
    reservations: dict[str, dict[str, Any]] | None  # None: the stack has no reservations table
    stock_before: dict[str, int]
    top_ups: dict[str, int]
    stock_after: dict[str, int]


def read_snapshot(
    stack: LocalStack,
    region: str,
    order_ids: list[str],
    stock_before: dict[str, int],
    top_ups: dict[str, int],
) -> TableSnapshot:
    """Read the run's orders, charges, shipments, reservations and stock."""
    dynamodb = stack.client("dynamodb", region)
    outputs = stack.outputs

    def by_order(output: str) -> dict[str, dict[str, Any]]:
        keys = [{"orderId": {"S": order_id}} for order_id in order_ids]
        return {item["orderId"]: item for item in batch_get(dynamodb, outputs[output], keys)}

    orders = batch_get(dynamodb, outputs["OrdersTableName"], [order_key(order_id) for order_id in order_ids])
    return TableSnapshot(
        order_ids=tuple(order_ids),
        orders={item["orderId"]: item for item in orders},
        payments=by_order("PaymentsTableName"),
        shipments=by_order("ShipmentsTableName"),
        reservations=by_order("ReservationsTableName") if "ReservationsTableName" in outputs else None,
        stock_before=stock_before,
        top_ups=top_ups,
        stock_after=read_stock(dynamodb, outputs["InventoryTableName"], stock_before),
    )


# --- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One invariant, whether it holds, and the orders or products that break it."""

    name: str
    holds: bool
    violations: tuple[str, ...] = ()
    skipped: str | None = None  # why it was not checked

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "holds": self.holds,
            "skipped": self.skipped,
            "violations": list(self.violations),
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


def check_invariants(snapshot: TableSnapshot) -> Verdict:
    """Whether the tables show a consistent end state for every accepted order."""
    orders = snapshot.orders
    status = {order_id: orders.get(order_id, {}).get("status") for order_id in snapshot.order_ids}
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
                if value not in TERMINAL_STATUSES
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
    checks.append(_check("stock = before + top-up − bought by COMPLETED orders", stock_errors))
    return Verdict(tuple(checks))


# --- a run ---------------------------------------------------------------------------------------


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


@dataclass
class OrderOutcome:
    """What became of one planned order (times are wall-clock seconds, as the order items stamp them)."""

    planned: PlannedOrder
    sent_at: float | None = None
    accepted_at: float | None = None
    order_id: str | None = None
    refusal: str | None = None  # why the API did not accept it
    status: str | None = None
    reason: str | None = None
    finished_at: float | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def latency(self) -> float | None:
        """POST sent -> terminal status, in seconds."""
        if self.sent_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.sent_at)

    @property
    def is_unexpected(self) -> bool:
        return self.order_id is None or not self.planned.is_expected(self.status, self.reason)

    def describe(self) -> dict[str, Any]:
        actual = self.status or ("REFUSED" if self.order_id is None else "PENDING")
        return {
            "orderId": self.order_id,
            "index": self.planned.index,
            "kind": self.planned.kind,
            "expected": self.planned.expected,
            "actual": actual,
            "reason": self.refusal or self.reason,
        }


@dataclass(frozen=True)
class BenchProgress:
    """How far a run is, for a progress bar."""

    stage: str
    total: int
    accepted: int = 0
    refused: int = 0
    terminal: int = 0


def _parse_time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


class OrderWatcher:
    """Reads the pending orders straight from the orders table, one batch read per poll for all of them."""

    def __init__(self, dynamodb: Any, table: str):
        self.dynamodb, self.table = dynamodb, table
        self._lock = threading.Lock()
        self._pending: dict[str, OrderOutcome] = {}
        self.terminal = 0

    def add(self, outcome: OrderOutcome) -> None:
        with self._lock:
            self._pending[str(outcome.order_id)] = outcome

    @property
    def pending(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def poll(self) -> int:
        """Record every pending order that reached a terminal status; return how many are left."""
        pending = self.pending
        if pending:
            items = batch_get(
                self.dynamodb,
                self.table,
                [order_key(order_id) for order_id in pending],
                projection="orderId, #status, updatedAt, failureReason",
                names={"#status": "status"},
            )
            observed = time.time()
            with self._lock:
                for item in items:
                    if item.get("status") not in TERMINAL_STATUSES:
                        continue
                    outcome = self._pending.pop(item["orderId"], None)
                    if outcome is None:
                        continue
                    outcome.status, outcome.reason = item["status"], item.get("failureReason")
                    # The status function stamps updatedAt as it writes the terminal status: that is
                    # when the order finished; the poll only noticed it later.
                    outcome.finished_at = _parse_time(item.get("updatedAt")) or observed
                    self.terminal += 1
        return len(self.pending)


@dataclass(frozen=True)
class BenchReport:
    """Everything a run measured, and its verdict."""

    config: BenchConfig
    run_id: str
    customer_id: str
    plan: BenchPlan
    outcomes: tuple[OrderOutcome, ...]
    started_at: float
    placed_at: float  # the last POST answered
    finished_at: float  # the last order terminal
    resources: ResourceUsage | None
    resources_note: str | None
    verdict: Verdict

    @property
    def accepted(self) -> list[OrderOutcome]:
        return [o for o in self.outcomes if o.order_id is not None]

    @property
    def unexpected(self) -> list[OrderOutcome]:
        return [o for o in self.outcomes if o.is_unexpected]

    @property
    def is_ok(self) -> bool:
        return self.verdict.holds and not self.unexpected

    def status_counts(self) -> dict[str, int]:
        return dict(
            Counter(o.status or ("REFUSED" if o.order_id is None else "PENDING") for o in self.outcomes)
        )

    def failure_reasons(self) -> dict[str, int]:
        """FAILED orders by error name (the part of the reason before the colon)."""
        return dict(
            Counter((o.reason or "unknown").split(":")[0] for o in self.outcomes if o.status == "FAILED")
        )

    def throughput(self) -> dict[str, float | None]:
        accepted = [o for o in self.accepted if o.accepted_at is not None]
        terminal = [o for o in self.outcomes if o.finished_at is not None]
        placing = self.placed_at - self.started_at
        finishing = max((o.finished_at or 0 for o in terminal), default=self.started_at) - self.started_at
        return {
            "acceptedPerSecond": round(len(accepted) / placing, 1) if placing > 0 else None,
            "completedPerSecond": round(len(terminal) / finishing, 1) if finishing > 0 else None,
            "placingSeconds": round(placing, 2),
            "totalSeconds": round(self.finished_at - self.started_at, 2),
        }

    def reason(self) -> str | None:
        """One line saying why the run is not OK, or None."""
        problems = [
            f"{len(check.violations)} violation(s) of “{check.name}”" for check in self.verdict.broken
        ]
        if self.unexpected:
            problems.append(f"{len(self.unexpected)} order(s) ended other than planned")
        return "; ".join(problems) or None

    def as_dict(self) -> dict[str, Any]:
        latencies = [o.latency for o in self.outcomes if o.latency is not None]
        return {
            "run": {
                "runId": self.run_id,
                "customerId": self.customer_id,
                "orders": self.config.orders,
                "concurrency": self.config.concurrency,
                "rate": self.config.rate,
                "mix": self.config.mix,
                "seed": self.config.seed,
            },
            "plan": {
                "kinds": self.plan.kind_counts(),
                "expected": self.plan.expected_counts(),
                "topUps": self.plan.top_ups,
            },
            "accepted": len(self.accepted),
            "refused": len(self.outcomes) - len(self.accepted),
            "throughput": self.throughput(),
            "latencyMs": summarize_latencies(latencies),
            "statusCounts": self.status_counts(),
            "failureReasons": self.failure_reasons(),
            "unexpected": [o.describe() for o in self.unexpected],
            "resources": self.resources.as_dict(len(self.accepted)) if self.resources else None,
            "resourcesNote": self.resources_note,
            "verdict": self.verdict.as_dict(),
            "ok": self.is_ok,
            "reason": self.reason(),
        }


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
    dynamodb = stack.client("dynamodb", region)
    inventory = stack.outputs["InventoryTableName"]
    run_id = uuid.uuid4().hex[:8]
    customer_id = f"bench-{run_id}"
    on_progress(BenchProgress("planning", config.orders))
    plan = plan_orders(read_catalog(dynamodb, inventory), config.orders, config.mix, config.seed)
    top_up_stock(dynamodb, inventory, plan.top_ups)
    outcomes = tuple(OrderOutcome(order) for order in plan.orders)
    watcher = OrderWatcher(dynamodb, stack.outputs["OrdersTableName"])
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
                "to reach COMPLETED or FAILED in the orders table",
            )
        except WaitTimeoutError as error:
            pending = watcher.pending
            raise WaitTimeoutError(
                f"{error} ({len(pending)} still PENDING)",
                hint=f"`sandbox trace {pending[0]}` shows where one stopped; "
                "a larger --wait-seconds gives a slow engine more time"
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
    snapshot = read_snapshot(stack, region, accepted_ids, plan.stock, plan.top_ups)
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
