"""What an order should end as, from its faults and the business rules alone.

One rule for the planner (what it expects of an order it plans) and the checker (what an order
item, read back from the table, implies): the saga's steps run in order, and the first of them
that fails for good decides the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sandbox.bench import CHARGE_LIMIT, DEAD_LETTERED
from sandbox.orders import SAGA_STEPS


def implied_outcome(
    faults: Mapping[str, Any] | None, total: Decimal, is_short: bool
) -> tuple[str, str | None]:
    """The final status, and the start of the failure reason, that an order's faults and rules imply.

    ``is_short``: whether a line asks for more than its product had in stock during the run.
    Within a step, an injected failure comes first, then a hang (every attempt outlives the step's
    timeout, whatever it would have answered), then the business rule. Flaky steps (fewer failing
    attempts than the retry budget), a first attempt that times out, duplicate deliveries, a
    publisher crash and replays change nothing about the outcome.
    """
    faults = faults or {}
    if faults.get("poison"):
        return DEAD_LETTERED, None
    for step in SAGA_STEPS:
        if faults.get("fail") == step:
            return "FAILED", f"InjectedFault: injected failure in {step}"
        if faults.get("hang") == step:
            return "FAILED", "States.Timeout"
        if step == "inventory" and is_short:
            return "FAILED", "OutOfStockError"
        if step == "payment" and total > CHARGE_LIMIT:
            return "FAILED", "PaymentDeclinedError"
    return "COMPLETED", None


def is_outcome(expected: tuple[str, str | None], status: str | None, reason: str | None) -> bool:
    """Whether a final status and failure reason are the implied ones (the reason by its start)."""
    expected_status, expected_reason = expected
    if status != expected_status:
        return False
    return expected_reason is None or (reason or "").startswith(expected_reason)
