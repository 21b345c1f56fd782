"""The Engine protocol: what every kind of local engine does, so no caller asks which kind it is."""

from __future__ import annotations

from typing import Any, Protocol

from sandbox.engine.state import EngineState


class Engine(Protocol):
    """One kind of local engine, for one state folder: how it starts, is found, answers and stops."""

    kind: str  # the name `--engine` takes: embedded, localstack, ministack-docker
    health_path: str

    def check_can_start(self) -> None:
        """Raise an EngineError when what this kind needs (Docker, say) is missing."""

    def start(self, timeout: float | None = None) -> EngineState:
        """Start a new engine on the settings' port and record it; on failure leave nothing behind."""

    def is_alive(self, state: EngineState) -> bool:
        """Whether what runs the recorded engine (its process, its container) still runs."""

    def health(self, state: EngineState) -> dict[str, Any] | None:
        """The engine's health document, or None when it does not answer."""

    def check_running(self, state: EngineState) -> EngineState:
        """The state, once the engine is alive and healthy; EngineNotRunningError saying why not."""

    def stop(self, state: EngineState) -> None:
        """Stop the recorded engine and remove what it left (workers, temp folders, containers)."""

    def stop_strays(self) -> list[str]:
        """Stop engines of this state folder that no record names; one line for each stopped."""

    def describe(self, state: EngineState) -> str:
        """`pid 123` or `container 1a2b3c4d5e6f`: what runs the engine."""

    def status_notes(self, state: EngineState) -> list[str]:
        """Hints for `sandbox status`: where the engine's logs are, tools that work with it."""
