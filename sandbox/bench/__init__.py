"""Load runs against the local stack: many orders at once, their outcomes, the engine's cost, a verdict.

A run plans its orders from a seed (the same seed and catalog give the same plan), places them
through the HTTP API from several concurrent clients, and watches them reach a terminal status by
reading the orders table directly, never through the API: polling ``GET /orders`` would invoke the
API function and load the engine being measured. The verdict (``check_invariants``) is read from
the tables alone, so a chaos runner can reuse it.
"""

from __future__ import annotations

from sandbox.bench.plan import (
    CHARGE_LIMIT,
    DEAD_LETTERED,
    MAX_FLAKY_ATTEMPTS,
    MAX_ITEM_QUANTITY,
    MIX_SHARES,
    MIXES,
    TERMINAL_STATUSES,
    BenchConfig,
    BenchPlan,
    OrderLine,
    PlannedOrder,
    Product,
    declined_line,
    ordinary_lines,
    out_of_stock_line,
    plan_orders,
    plan_top_ups,
    reserved_units,
    sellable_products,
)
from sandbox.bench.report import BenchReport, Load, percentile, summarize_latencies
from sandbox.bench.resources import ProcessTreeSample, ResourceSampler, ResourceUsage, read_process_tree
from sandbox.bench.run import Progress, run_bench, run_load
from sandbox.bench.tables import (
    OnFailureQueue,
    TableSnapshot,
    batch_get,
    read_catalog,
    read_snapshot,
    read_stock,
)
from sandbox.bench.verdict import (
    DEAD_LETTER_CHECK,
    SHOWN_VIOLATIONS,
    STOCK_CHECK,
    Check,
    Verdict,
    check_invariants,
)
from sandbox.bench.watch import ApiAnswer, BenchProgress, OrderOutcome, OrderWatcher

__all__ = [
    "CHARGE_LIMIT",
    "DEAD_LETTERED",
    "DEAD_LETTER_CHECK",
    "MAX_FLAKY_ATTEMPTS",
    "MAX_ITEM_QUANTITY",
    "MIXES",
    "MIX_SHARES",
    "SHOWN_VIOLATIONS",
    "STOCK_CHECK",
    "TERMINAL_STATUSES",
    "ApiAnswer",
    "BenchConfig",
    "BenchPlan",
    "BenchProgress",
    "BenchReport",
    "Check",
    "Load",
    "OnFailureQueue",
    "OrderLine",
    "OrderOutcome",
    "OrderWatcher",
    "PlannedOrder",
    "ProcessTreeSample",
    "Product",
    "Progress",
    "ResourceSampler",
    "ResourceUsage",
    "TableSnapshot",
    "Verdict",
    "batch_get",
    "check_invariants",
    "declined_line",
    "ordinary_lines",
    "out_of_stock_line",
    "percentile",
    "plan_orders",
    "plan_top_ups",
    "read_catalog",
    "read_process_tree",
    "read_snapshot",
    "read_stock",
    "reserved_units",
    "run_bench",
    "run_load",
    "sellable_products",
    "summarize_latencies",
]
