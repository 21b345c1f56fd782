"""Local engines: start, find and stop the engine `sandbox up` runs, whatever its kind.

Every kind is one class behind the ``Engine`` protocol (``embedded``: MiniStack as a subprocess;
``container``: LocalStack or MiniStack in Docker through compose.yaml), chosen once by
``engine_for(settings)``. ``lifecycle`` holds what every kind shares; ``state`` the state
folder's record and lock.
"""

from __future__ import annotations

from sandbox.engine.embedded import HEALTH_PATH, EmbeddedEngine, engine_environment
from sandbox.engine.lifecycle import (
    RecordedEngine,
    adopt_running_engine,
    engine_for,
    engine_of,
    recorded_engine,
    running_engine,
    start_engine,
    stop_engine,
)
from sandbox.engine.probes import find_free_port, is_process_alive, read_health
from sandbox.engine.protocol import Engine
from sandbox.engine.state import EngineState, locked_state_dir, read_engine_state

__all__ = [
    "HEALTH_PATH",
    "EmbeddedEngine",
    "Engine",
    "EngineState",
    "RecordedEngine",
    "adopt_running_engine",
    "engine_environment",
    "engine_for",
    "engine_of",
    "find_free_port",
    "is_process_alive",
    "locked_state_dir",
    "read_engine_state",
    "read_health",
    "recorded_engine",
    "running_engine",
    "start_engine",
    "stop_engine",
]
