"""The one polling helper: wait until a check passes, or fail naming what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sandbox.errors import WaitTimeoutError

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    max_interval: float = 0.5,
    growth: float = 1.5,
) -> T:
    """Call ``check`` until it returns something truthy; return that value.

    The interval grows gently (by ``growth`` each round) so fast things are seen fast and slow
    ones are not hammered.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * growth, max_interval)
