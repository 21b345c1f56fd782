"""What a run measured: throughput, latency percentiles, outcomes, cost and verdict, as one document."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.bench.calls import CallCounts
from sandbox.bench.plan import BenchConfig, BenchPlan
from sandbox.bench.resources import ResourceUsage
from sandbox.bench.verdict import Verdict
from sandbox.bench.watch import OrderOutcome


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


@dataclass(frozen=True)
class Load:
    """A plan's orders placed and followed to their end: what became of each, when, at what cost.

    Its figures (counts, throughput, latency, engine cost) are what the reports of `sandbox bench`
    and `sandbox chaos` share.
    """

    outcomes: tuple[OrderOutcome, ...]
    started_at: float
    placed_at: float  # the last POST answered
    finished_at: float  # the last order terminal
    resources: ResourceUsage | None
    resources_note: str | None
    calls: CallCounts | None = None  # what the engine answered from the first POST to the last order's end

    @property
    def accepted(self) -> list[OrderOutcome]:
        return [o for o in self.outcomes if o.order_id is not None]

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

    def figures(self) -> dict[str, Any]:
        """Counts, throughput, latency and engine cost, as the JSON reports share them."""
        # A poisoned order has no saga: its time to the dead letter is the engine's retry schedule.
        latencies = [o.latency for o in self.outcomes if o.latency is not None and not o.planned.is_poisoned]
        return {
            "accepted": len(self.accepted),
            "refused": len(self.outcomes) - len(self.accepted),
            "throughput": self.throughput(),
            "latencyMs": summarize_latencies(latencies),
            "statusCounts": self.status_counts(),
            "failureReasons": self.failure_reasons(),
            "resources": self.resources.as_dict(len(self.accepted)) if self.resources else None,
            "resourcesNote": self.resources_note,
            "callsPerOrder": self.calls.per_order(self.terminal_count()) if self.calls else None,
        }

    def terminal_count(self) -> int:
        """Accepted orders that reached a terminal status (what the engine's counts are shared by)."""
        return sum(1 for o in self.accepted if o.is_terminal)


@dataclass(frozen=True)
class BenchReport:
    """Everything a run measured, and its verdict."""

    config: BenchConfig
    run_id: str
    customer_id: str
    plan: BenchPlan
    load: Load
    verdict: Verdict

    @property
    def outcomes(self) -> tuple[OrderOutcome, ...]:
        return self.load.outcomes

    @property
    def accepted(self) -> list[OrderOutcome]:
        return self.load.accepted

    @property
    def unexpected(self) -> list[OrderOutcome]:
        return [o for o in self.outcomes if o.is_unexpected]

    @property
    def is_ok(self) -> bool:
        return self.verdict.holds and not self.unexpected

    def reason(self) -> str | None:
        """One line saying why the run is not OK, or None."""
        problems = [
            f"{len(check.violations)} violation(s) of “{check.name}”" for check in self.verdict.broken
        ]
        if self.unexpected:
            problems.append(f"{len(self.unexpected)} order(s) ended other than planned")
        return "; ".join(problems) or None

    def as_dict(self) -> dict[str, Any]:
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
            **self.load.figures(),
            "unexpected": [o.describe() for o in self.unexpected],
            "verdict": self.verdict.as_dict(),
            "ok": self.is_ok,
            "reason": self.reason(),
        }
