"""Warm before the first invocation: `sandbox up` asks the engine for one worker of each function.

The engine starts them in the background (``sandbox.engine_patches.prewarm``), so `up` returns as
soon as the stack is deployed and the first order finds its functions warm. Engines without the
sandbox's patches (LocalStack) have no such route: their functions start cold, as before.
"""

from __future__ import annotations

from typing import Any

from sandbox.engine_patches.prewarm import PREWARM, ROUTE
from sandbox.engine_routes import engine_route


def request_prewarm(endpoint_url: str, functions: list[str]) -> list[str] | None:
    """Ask the engine to warm ``functions``; the names it is warming, None when it cannot."""
    answer = engine_route(endpoint_url, PREWARM, {"functions": functions})
    warming = answer.get("warming") if isinstance(answer, dict) else None
    return [str(name) for name in warming] if isinstance(warming, list) else None


def engine_workers(endpoint_url: str) -> dict[str, Any] | None:
    """The engine's live workers and what prewarming did; None when it cannot say."""
    answer = engine_route(endpoint_url, ROUTE)
    return answer if isinstance(answer, dict) else None
