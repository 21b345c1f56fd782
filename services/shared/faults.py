"""Fault injection: faults travel with the order and every forward saga step checks them here."""

from __future__ import annotations

import os
from typing import Any

from shared.errors import InjectedFailure, TransientStepError

STEP_SERVICES = ("inventory", "payment", "shipping")
DEFAULT_FLAKY_ATTEMPTS = 2


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
    failing_attempts = int((faults.get("flaky") or {}).get(service, 0))
    if retry_count < failing_attempts:
        raise TransientStepError(
            f"injected transient error in {service} (attempt {retry_count + 1} of {failing_attempts} failing)"
        )
