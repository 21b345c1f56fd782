"""The saga clock of a running engine (``sandbox up --time-scale``): read it, change it for a while."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sandbox.engine_patches.clock import ROUTE, parse_time_scale, time_scale_json
from sandbox.engine_routes import engine_request, engine_route
from sandbox.errors import EngineError


@dataclass(frozen=True)
class EngineClock:
    """An engine's saga clock: its speed-up (math.inf: ``max``; None: the default clock)."""

    time_scale: float | None
    wait_scale: float | None
    budget_floor_seconds: float

    @classmethod
    def from_json(cls, answer: dict[str, Any]) -> EngineClock:
        return cls(
            time_scale=parse_time_scale(answer.get("timeScale")),
            wait_scale=answer.get("waitScale"),
            budget_floor_seconds=float(answer.get("budgetFloorSeconds") or 0.0),
        )

    def saga_seconds(self, wall_seconds: float) -> float | None:
        """Saga time that ``wall_seconds`` of waiting stands for (None under ``max`` or the default clock)."""
        if self.time_scale is None or math.isinf(self.time_scale):
            return None
        return wall_seconds * self.time_scale

    def to_json(self) -> dict[str, Any]:
        return {
            "timeScale": time_scale_json(self.time_scale),
            "waitScale": self.wait_scale,
            "budgetFloorSeconds": self.budget_floor_seconds,
        }


def read_engine_clock(endpoint_url: str) -> EngineClock | None:
    """The engine's saga clock; None for an engine without one (LocalStack) or one not answering."""
    answer = engine_route(endpoint_url, ROUTE, timeout=5)
    return EngineClock.from_json(answer) if isinstance(answer, dict) else None


def set_engine_clock(endpoint_url: str, time_scale: float | None) -> EngineClock:
    """Run the engine's saga clock at ``time_scale`` from its next wait on (None: the default clock)."""
    status, answer = engine_request(
        endpoint_url, ROUTE, method="POST", body={"timeScale": time_scale_json(time_scale)}, timeout=5
    )
    if status != 200 or not isinstance(answer, dict):
        message = answer.get("message") if isinstance(answer, dict) else None
        raise EngineError(
            f"the engine did not set its clock: {message or 'it has no saga clock'}",
            hint="the time scale needs the sandbox's own engines (embedded or ministack-docker)",
        )
    return EngineClock.from_json(answer)


@contextmanager
def engine_clock_at(endpoint_url: str, time_scale: float | None) -> Iterator[EngineClock]:
    """The engine's saga clock at ``time_scale`` inside the block, put back as it was after it."""
    before = read_engine_clock(endpoint_url)
    clock = set_engine_clock(endpoint_url, time_scale)
    try:
        yield clock
    finally:
        set_engine_clock(endpoint_url, before.time_scale if before else None)
