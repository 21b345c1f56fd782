"""The plan of a chaos run: seeded orders, each with the business rules and a random mix of faults.

A plan is a pure function of the catalog (with its stock) and the run's configuration: the same
seed gives the same orders, faults, replays and duplicate requests.
"""

from __future__ import annotations

import random
import shlex
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sandbox.bench import MAX_FLAKY_ATTEMPTS, BenchConfig, BenchPlan, OrderLine, PlannedOrder, Product
from sandbox.bench.plan import (
    declined_line,
    ordinary_lines,
    out_of_stock_line,
    reserved_units,
    sellable_products,
)
from sandbox.chaos.outcomes import implied_outcome
from sandbox.errors import UsageError
from sandbox.orders import SAGA_STEPS

# The faults the sandbox has, by the names --faults takes, and the field each sets in a request.
FAULT_FIELDS = {
    "fail": "fail",
    "flaky": "flaky",
    "duplicate-delivery": "duplicateDelivery",
    "crash": "crash",
    "timeout": "timeout",
    "hang": "hang",
    "poison": "poison",
}
FAULT_KINDS = (*FAULT_FIELDS, "replay")
# The share of orders carrying each fault (an order may carry several). A hanging step holds a
# Lambda worker for about 24 s and a step that times out once for 6 s. A failed delivery holds
# back its lane of the stream, as on AWS: 0.25 s for a crash, a few seconds for a poisoned record
# (retried with backoff, bisected, then dead-lettered). Those stay few.
FAULT_SHARES = {
    "fail": 0.06,
    "flaky": 0.1,
    "duplicate-delivery": 0.02,
    "crash": 0.01,
    "timeout": 0.01,
    "hang": 0.005,
    "poison": 0.005,
    "replay": 0.03,
}
# Orders beyond stock, and over the card limit.
BUSINESS_SHARES = {"out-of-stock": 0.06, "declined": 0.06}
# From this many orders a run has at least one of every kind it asks for.
EVERY_KIND_FROM = 20
DUPLICATE_MODES = ("after", "concurrent")
DEFAULT_DUPLICATE_REQUESTS = 0.05


def parse_fault_kinds(text: str) -> tuple[str, ...]:
    """``all``, ``none`` or a comma-separated list of FAULT_KINDS, in their canonical order."""
    if text.strip() == "all":
        return FAULT_KINDS
    named = {name.strip() for name in text.split(",") if name.strip() and name.strip() != "none"}
    unknown = sorted(named - set(FAULT_KINDS))
    if unknown:
        raise UsageError(
            f"--faults {text!r}: unknown {', '.join(unknown)}",
            hint=f"choose from {', '.join(FAULT_KINDS)} (or all, none)",
        )
    return tuple(kind for kind in FAULT_KINDS if kind in named)


@dataclass(frozen=True)
class ChaosConfig:
    """What `sandbox chaos` was asked to do."""

    orders: int = 300
    concurrency: int = 8
    seed: int = 1
    faults: tuple[str, ...] = FAULT_KINDS
    duplicate_requests: float = DEFAULT_DUPLICATE_REQUESTS  # share of POSTs sent twice with one key
    wait_seconds: float = 300  # after the last order is placed, until every one is terminal

    def validate(self) -> None:
        BenchConfig(self.orders, self.concurrency, wait_seconds=self.wait_seconds).validate()
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        if unknown:
            raise UsageError(
                f"--faults: unknown {', '.join(unknown)}", hint=f"choose from {', '.join(FAULT_KINDS)}"
            )
        if not 0 <= self.duplicate_requests <= 1:
            raise UsageError(f"--duplicate-requests {self.duplicate_requests:g}: a share from 0 to 1")

    @property
    def command(self) -> str:
        """The command line that plans this run again."""
        faults = "all" if self.faults == FAULT_KINDS else ",".join(self.faults) or "none"
        return shlex.join(
            ["sandbox", "chaos", "--orders", str(self.orders), "--concurrency", str(self.concurrency),
             "--seed", str(self.seed), "--faults", faults, "--duplicate-requests", f"{self.duplicate_requests:g}"]
        )  # fmt: skip


def fault_kinds(order: PlannedOrder) -> tuple[str, ...]:
    """What an order carries, by name: its business rule broken, its faults, a replay, a duplicate POST."""
    kinds = [order.kind] if order.kind != "happy" else []
    kinds += [kind for kind, field in FAULT_FIELDS.items() if (order.faults or {}).get(field)]
    if order.is_replayed:
        kinds.append("replay")
    if order.duplicate:
        kinds.append(f"duplicate-request ({order.duplicate})")
    return tuple(kinds)


def _faults(index: int, chosen: dict[str, set[int]], rng: random.Random) -> dict[str, Any]:
    """The request's faults for one order, drawn for each kind the order was chosen for."""
    faults: dict[str, Any] = {}
    if index in chosen["poison"]:
        faults["poison"] = True
    if index in chosen["fail"]:
        faults["fail"] = rng.choice(SAGA_STEPS)
    if index in chosen["flaky"]:
        steps = sorted(rng.sample(SAGA_STEPS, rng.randint(1, 2)))
        faults["flaky"] = {step: rng.randint(1, MAX_FLAKY_ATTEMPTS) for step in steps}
    if index in chosen["duplicate-delivery"]:
        faults["duplicateDelivery"] = True
    if index in chosen["crash"]:
        faults["crash"] = "publisher"
    if index in chosen["timeout"]:
        faults["timeout"] = rng.choice(SAGA_STEPS)
    if index in chosen["hang"]:
        faults["hang"] = rng.choice(SAGA_STEPS)
    return faults


def _scarcest(sellable: dict[str, Product], spared: str | None) -> str:
    """The product with the least stock, other than ``spared`` while another is left."""
    candidates = [product for pid, product in sellable.items() if pid != spared] or list(sellable.values())
    return min(candidates, key=lambda product: (product.stock, product.product_id)).product_id


def _expecting(order: PlannedOrder, *, is_short: bool) -> PlannedOrder:
    """The order with the outcome its faults and the business rules imply."""
    status, reason = implied_outcome(order.faults, order.total, is_short)
    return PlannedOrder(order.index, order.kind, order.lines, order.faults or None, status, reason,
                        order.is_replayed, order.duplicate)  # fmt: skip


def plan_chaos(catalog: dict[str, Product], config: ChaosConfig) -> BenchPlan:
    """The orders of a chaos run: a pure function of the catalog (with its stock) and the config."""
    config.validate()
    sellable = sellable_products(catalog)
    rng = random.Random(config.seed)
    count = config.orders

    def pick(share: float, excluded: set[int] | None = None, *, is_asked: bool = True) -> set[int]:
        """A seeded sample of round(count × share) orders (at least one in a run of EVERY_KIND_FROM)."""
        if not is_asked or share <= 0:
            return set()
        among = [index for index in range(count) if index not in (excluded or set())]
        wanted = max(1 if count >= EVERY_KIND_FROM else 0, round(count * share))
        return set(rng.sample(among, min(wanted, len(among))))

    asked = set(config.faults)
    chosen = {"poison": pick(FAULT_SHARES["poison"], is_asked="poison" in asked)}
    poisoned = chosen["poison"]  # an unreadable record: nothing else about the order ever runs
    chosen["hang"] = pick(FAULT_SHARES["hang"], poisoned, is_asked="hang" in asked)
    short = pick(BUSINESS_SHARES["out-of-stock"], poisoned)
    declined = pick(BUSINESS_SHARES["declined"], poisoned | short)
    # A replay runs the saga again; one of a hanging order would hang for another 20 s.
    replayed = pick(FAULT_SHARES["replay"], poisoned | chosen["hang"], is_asked="replay" in asked)
    for kind in ("fail", "flaky", "duplicate-delivery", "crash", "timeout"):
        chosen[kind] = pick(FAULT_SHARES[kind], poisoned, is_asked=kind in asked)
    duplicated = pick(config.duplicate_requests)
    over_limit = declined_line(sellable) if declined else None
    # Out-of-stock orders ask for one unit more than a product ever holds, within the API's limit per
    # line; the stock that a large run's other orders need would exceed it. So the scarcest product
    # (not the one that goes over the card limit) is left out of every other order.
    scarce = _scarcest(sellable, over_limit.product_id if over_limit else None) if short else None
    ordinary = {pid: product for pid, product in sellable.items() if pid != scarce} or sellable
    drafts: list[PlannedOrder] = []
    for index in range(count):
        kind = "out-of-stock" if index in short else "declined" if index in declined else "happy"
        lines: tuple[OrderLine, ...] = ()  # an out-of-stock line depends on the top-ups, below
        if over_limit and kind == "declined":
            lines = (over_limit,)
        elif kind == "happy":
            lines = ordinary_lines(ordinary, rng)
        duplicate = rng.choice(DUPLICATE_MODES) if index in duplicated else None
        faults = _faults(index, chosen, rng)
        drafts.append(
            PlannedOrder(index, kind, lines, faults, is_replayed=index in replayed, duplicate=duplicate)
        )
    # As many units as the run may take: it leaves at least the stock it found, for later runs and
    # tests that order the same demo products.
    top_ups = dict(sorted(reserved_units(drafts).items()))
    if scarce:
        line = out_of_stock_line(catalog, {scarce: sellable[scarce]}, top_ups)
        drafts = [
            PlannedOrder(o.index, o.kind, (line,), o.faults, is_replayed=o.is_replayed, duplicate=o.duplicate)
            if o.kind == "out-of-stock"
            else o
            for o in drafts
        ]
    orders = tuple(_expecting(order, is_short=order.kind == "out-of-stock") for order in drafts)
    stock = {pid: product.stock for pid, product in catalog.items()}
    return BenchPlan(orders, "chaos", config.seed, stock, top_ups)


def planned_kinds(plan: BenchPlan) -> dict[str, int]:
    """How many orders carry each kind (an order with several counts under each)."""
    return dict(Counter(kind for order in plan.orders for kind in fault_kinds(order)))
