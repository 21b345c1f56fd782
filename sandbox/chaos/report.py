"""What a chaos run did and found: counts per fault, outcome and invariant, figures, violations."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sandbox.bench import BenchPlan, Load, OrderOutcome
from sandbox.chaos.check import ChaosVerdict
from sandbox.chaos.plan import ChaosConfig, fault_kinds, planned_kinds


@dataclass(frozen=True)
class ChaosReport:
    """A chaos run: its plan, what became of every order, its replays, and the checker's verdict."""

    config: ChaosConfig
    run_id: str
    customer_prefix: str  # every order of the run has a customer of its own, named with this prefix
    plan: BenchPlan
    load: Load
    verdict: ChaosVerdict
    replays: dict[str, str] = field(default_factory=dict)  # order id -> the replay's end (or its error)
    settled_at: float | None = None  # replays done and every execution ended

    @property
    def outcomes(self) -> tuple[OrderOutcome, ...]:
        return self.load.outcomes

    @property
    def refused(self) -> list[OrderOutcome]:
        """Orders the API never accepted (every request of a run is valid)."""
        return [o for o in self.outcomes if o.order_id is None]

    @property
    def replay_errors(self) -> dict[str, str]:
        return {order_id: end for order_id, end in self.replays.items() if end not in ("SUCCEEDED", "FAILED")}

    @property
    def is_ok(self) -> bool:
        return self.verdict.holds and not self.refused and not self.replay_errors

    def outcomes_by_fault(self) -> dict[str, dict[str, int]]:
        """Fault kind -> how the orders that carried it ended."""
        counted: dict[str, Counter[str]] = {}
        for outcome in self.outcomes:
            end = outcome.status or ("REFUSED" if outcome.order_id is None else "PENDING")
            for kind in fault_kinds(outcome.planned) or ("none",):
                counted.setdefault(kind, Counter())[end] += 1
        return {kind: dict(counts) for kind, counts in sorted(counted.items())}

    def duplicates(self) -> dict[str, Any]:
        """How the API answered the requests sent again with the same key."""
        answers: Counter[str] = Counter()
        others = []
        for outcome in self.outcomes:
            for answer in outcome.duplicate_answers:
                if answer.order_id is not None and answer.order_id == outcome.order_id:
                    answers["sameOrder"] += 1
                elif answer.status == 409:
                    answers["inFlight"] += 1
                else:
                    answers["other"] += 1
                    others.append({"orderId": outcome.order_id, "status": answer.status,
                                   "answeredOrderId": answer.order_id, "refusal": answer.refusal})  # fmt: skip
        return {"sent": sum(answers.values()), **dict(answers), "others": others}

    def reason(self) -> str | None:
        """One line saying why the run is not OK, or None."""
        problems = [
            f"{len(check.violations)} violation(s) of “{check.name}”" for check in self.verdict.broken
        ]
        if self.refused:
            problems.append(f"{len(self.refused)} order(s) refused by the API")
        if self.replay_errors:
            problems.append(f"{len(self.replay_errors)} replay(s) that did not end")
        return "; ".join(problems) or None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": {
                "orders": self.config.orders,
                "concurrency": self.config.concurrency,
                "seed": self.config.seed,
                "faults": list(self.config.faults),
                "duplicateRequests": self.config.duplicate_requests,
                "runId": self.run_id,
                "customerPrefix": self.customer_prefix,
            },
            "reproduce": self.config.command,
            "plan": {
                "kinds": planned_kinds(self.plan),
                "expected": self.plan.expected_counts(),
                "topUps": self.plan.top_ups,
            },
            **self.load.figures(),
            "settleSeconds": round(self.settled_at - self.load.finished_at, 2) if self.settled_at else None,
            "outcomesByFault": self.outcomes_by_fault(),
            "duplicates": self.duplicates(),
            "replays": {
                "count": len(self.replays),
                "ends": dict(
                    Counter(
                        end if end in ("SUCCEEDED", "FAILED") else "error" for end in self.replays.values()
                    )
                ),
                "errors": self.replay_errors,
            },
            "refusedOrders": [o.describe() for o in self.refused],
            "verdict": self.verdict.as_dict(),
            "ok": self.is_ok,
            "reason": self.reason(),
        }
