"""Fault injection: faults travel with the order and every forward saga step checks them here."""

from __future__ import annotations

import os
import time
from typing import Any

from shared.aws import named_table
from shared.errors import InjectedFailure, TransientStepError
from shared.records import put_if_absent

STEP_SERVICES = ("inventory", "payment", "shipping")
DEFAULT_FLAKY_ATTEMPTS = 2
# The saga's Task TimeoutSeconds (state_machines/order_saga.asl.json); `timeout` outlives it.
STEP_TIMEOUT_SECONDS = 5


def is_fault_injection_enabled() -> bool:
    """Whether this stack was deployed with the FaultInjection parameter enabled."""
    return os.environ.get("FAULT_INJECTION", "disabled") == "enabled"


def check_faults(faults: dict[str, Any] | None, service: str, retry_count: int) -> None:
    """Raise the fault the order asks of ``service`` on this attempt, if any.

    ``retry_count`` is the state's ``$$.State.RetryCount`` (0 on the first attempt), so
    ``flaky: {service: N}`` fails exactly the first N attempts with a transient error.
    """
    if not faults or not is_fault_injection_enabled():
        return
    if faults.get("fail") == service:
        raise InjectedFailure(f"injected failure in {service}")
    if (faults.get("timeout") == service and retry_count == 0) or faults.get("hang") == service:
        # A slow attempt: the state times out and retries, while this attempt goes on and does its
        # work late. With `timeout` only the first attempt is slow and a retry wins (the late one
        # finds the retry's idempotency record); with `hang` every attempt is, the saga gives up
        # and compensates this step too, and whatever lands late is undone or finds a tombstone.
        time.sleep(STEP_TIMEOUT_SECONDS + 1)
    failing_attempts = int((faults.get("flaky") or {}).get(service, 0))
    if retry_count < failing_attempts:
        raise TransientStepError(
            f"injected transient error in {service} (attempt {retry_count + 1} of {failing_attempts} failing)"
        )


def is_first_occurrence(order_id: str, fault: str, table: Any = None) -> bool:
    """True the first time a one-shot fault fires for an order (a marker item records it)."""
    table = table or named_table("ORDERS_TABLE")
    return put_if_absent(table, {"pk": f"ORDER#{order_id}", "sk": f"FAULT#{fault}", "orderId": order_id})
