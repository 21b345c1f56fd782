"""Which engine runs, chosen once from the settings, and the lifecycle every kind shares.

`up` starts the settings' engine unless the state folder's engine already runs; `down` stops the
one the folder records, whatever its kind. Both first repair the folder: a record that cannot be
read, or that names an engine that has exited, is reported in one line and cleared, and an engine
of the folder that no record names is stopped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from sandbox.engine import compose
from sandbox.engine.container import ContainerEngine
from sandbox.engine.embedded import EmbeddedEngine
from sandbox.engine.probes import is_port_in_use
from sandbox.engine.protocol import Engine
from sandbox.engine.state import (
    EngineState,
    UnreadableStateError,
    load_engine_state,
    prepare_state_dir,
    read_engine_state,
    remove_engine_state,
)
from sandbox.errors import EngineError, EngineNotRunningError, SandboxError, UsageError
from sandbox.settings import ENGINES, Settings

Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def engine_for(settings: Settings) -> Engine:
    """The engine of the kind the settings name."""
    if settings.engine == EmbeddedEngine.kind:
        return EmbeddedEngine(settings)
    if settings.engine in compose.CONTAINER_ENGINES:
        return ContainerEngine(settings, compose.CONTAINER_ENGINES[settings.engine])
    raise UsageError(f"unknown engine {settings.engine!r}", hint=f"choose one of: {', '.join(ENGINES)}")


@dataclass(frozen=True)
class RecordedEngine:
    """The engine a state folder records, with the kind that knows how to reach and stop it."""

    engine: Engine
    state: EngineState


def engine_of(settings: Settings, state: EngineState) -> Engine:
    """The engine of the kind a record names (the settings may name another kind)."""
    return engine_for(replace(settings, engine=state.engine))


def _recorded(settings: Settings, state: EngineState) -> RecordedEngine:
    return RecordedEngine(engine_of(settings, state), state)


def recorded_engine(settings: Settings) -> RecordedEngine | None:
    """The engine the state folder records (alive or not), or None when there is no readable record."""
    state = read_engine_state(settings)
    return None if state is None else _recorded(settings, state)


def _repair(settings: Settings, notify: Notify) -> RecordedEngine | None:
    """As recorded_engine, after clearing an unreadable record and stopping engines no record names."""
    try:
        state = load_engine_state(settings)
    except UnreadableStateError as error:
        notify(f"{error}; removed it")
        remove_engine_state(settings)
        state = None
        kinds: tuple[str, ...] = ENGINES  # the record said which kind it was: look for every kind
    else:
        kinds = (settings.engine,)
    if state is not None:
        return _recorded(settings, state)
    for kind in kinds:
        for line in engine_for(replace(settings, engine=kind)).stop_strays():
            notify(line)
    return None


def _refuse_another(settings: Settings, recorded: RecordedEngine) -> None:
    """A running engine of another kind or port is never silently used instead of the one asked for."""
    state = recorded.state
    if state.engine != settings.engine:
        raise EngineError(
            f"the {state.engine} engine is already running ({recorded.engine.describe(state)}, port {state.port})",
            hint=f"run `sandbox down` first, then `sandbox up --engine {settings.engine}`",
        )
    if state.port != settings.port:
        raise EngineError(
            f"the engine of this state folder ({settings.state_dir}) runs on port {state.port}, not {settings.port}",
            hint="run `sandbox down` first, or use another SANDBOX_STATE_DIR for a second engine",
        )


def _discard(settings: Settings, recorded: RecordedEngine) -> None:
    """Remove what is left of an engine that died; never hide the error that led here."""
    with contextlib.suppress(SandboxError):
        recorded.engine.stop(recorded.state)
    remove_engine_state(settings)


def start_engine(
    settings: Settings,
    *,
    timeout: float | None = None,
    progress: Notify = _quiet,
    notify: Notify = _quiet,
) -> tuple[EngineState, bool]:
    """Start the settings' engine unless the folder's engine runs; return it and whether it is new.

    ``progress`` hears what is being done, ``notify`` one line for each repair of the state folder.
    """
    recorded = _repair(settings, notify)
    if recorded is not None:
        engine, state = recorded.engine, recorded.state
        if engine.is_alive(state):
            _refuse_another(settings, recorded)
            return engine.check_running(state), False
        notify(
            f"the {state.engine} engine recorded in {settings.state_dir} ({engine.describe(state)}) "
            "had exited; starting a new one"
        )
        _discard(settings, recorded)
    engine = engine_for(settings)
    engine.check_can_start()
    if is_port_in_use(settings.port):
        raise EngineError(
            f"port {settings.port} is already in use by another process",
            hint="stop that process, or choose another port with --port or SANDBOX_PORT",
        )
    prepare_state_dir(settings)
    progress(f"starting the {engine.kind} engine on port {settings.port}")
    return engine.start(timeout), True


def running_engine(settings: Settings) -> EngineState:
    """The engine `sandbox up` started, checked alive and healthy."""
    state = load_engine_state(settings)  # an unreadable record is an EngineNotRunningError with a hint
    if state is None:
        raise EngineNotRunningError("no sandbox engine is running", hint="run `sandbox up` first")
    return engine_of(settings, state).check_running(state)


def stop_engine(settings: Settings, *, notify: Notify = _quiet) -> EngineState | None:
    """Stop exactly the engine `up` started in this state folder (and any it lost track of); None if none."""
    recorded = _repair(settings, notify)
    if recorded is None:
        return None
    engine, state = recorded.engine, recorded.state
    if not engine.is_alive(state):
        notify(
            f"the {state.engine} engine recorded in {settings.state_dir} ({engine.describe(state)}) "
            "had already exited; removing what it left"
        )
    engine.stop(state)
    remove_engine_state(settings)
    return state


def adopt_running_engine(settings: Settings, *, is_chosen: bool, is_port_chosen: bool = False) -> Settings:
    """The settings, with the running engine's kind and port unless chosen (flag or env).

    So a plain `sandbox up` redeploys onto whichever engine runs; a chosen kind or port that the
    running engine does not have is refused by start_engine.
    """
    is_engine_chosen = is_chosen or bool(os.environ.get("SANDBOX_ENGINE"))
    is_port_chosen = is_port_chosen or bool(os.environ.get("SANDBOX_PORT"))
    if is_engine_chosen and is_port_chosen:
        return settings
    recorded = recorded_engine(settings)
    if recorded is None or not recorded.engine.is_alive(recorded.state):
        return settings
    state = recorded.state
    return replace(
        settings,
        engine=settings.engine if is_engine_chosen else state.engine,
        port=settings.port if is_port_chosen else state.port,
    )
