"""Kept for modules that still import the engine from here; the engine lives in ``sandbox.engine``."""

from __future__ import annotations

from sandbox.engine import (
    HEALTH_PATH,
    EngineState,
    engine_environment,
    find_free_port,
    running_engine,
    stop_engine,
)

__all__ = [
    "HEALTH_PATH",
    "EngineState",
    "engine_environment",
    "find_free_port",
    "running_engine",
    "stop_engine",
]
