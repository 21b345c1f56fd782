"""The state folder: what `sandbox up` recorded about its engine, and the lock around changing it.

One engine per state folder. `up`, `down` and `reset` hold the folder's lock while they work, so
two of them never start two engines, deploy at once or write the record over each other; the
record itself is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.errors import EngineNotRunningError
from sandbox.settings import ENGINES, Settings
from sandbox.waiting import wait_until

STATE_FILE = "engine.json"
LOG_FILE = "engine.log"
# Longer than the slowest `up` (a container engine's image build, then its health check).
LOCK_TIMEOUT = 1200.0


@dataclass(frozen=True)
class EngineState:
    """What `sandbox up` recorded about the engine it started."""

    engine: str
    pid: int | None  # the embedded engine's process (and process group); None for a container engine
    port: int
    log_path: str
    started_at: float
    compose_project: str | None = None  # container engines: what `down` removes
    container_id: str | None = None
    container_name: str | None = None
    image: str | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class UnreadableStateError(EngineNotRunningError):
    """The state folder's engine record exists but cannot be read."""


def state_path(settings: Settings) -> Path:
    return settings.state_dir / STATE_FILE


def load_engine_state(settings: Settings) -> EngineState | None:
    """The recorded engine, None when none was started; UnreadableStateError for a damaged record."""
    path = state_path(settings)
    try:
        state = EngineState(**json.loads(path.read_text()))
        if state.engine not in ENGINES:
            raise ValueError(f"unknown engine {state.engine!r}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        raise UnreadableStateError(
            f"the engine record {path} cannot be read ({str(error) or type(error).__name__})",
            hint="run `sandbox down`: it finds and stops the engine of this state folder and removes the record",
        ) from error
    return state


def read_engine_state(settings: Settings) -> EngineState | None:
    """The recorded engine, or None when none was started or its record cannot be read."""
    try:
        return load_engine_state(settings)
    except UnreadableStateError:
        return None


def prepare_state_dir(settings: Settings) -> None:
    """Create the state folder, kept out of git."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ignore = settings.state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def write_engine_state(settings: Settings, state: EngineState) -> None:
    """Record the engine atomically: a reader sees the old record or the new one, never a part."""
    prepare_state_dir(settings)
    handle, partial = tempfile.mkstemp(dir=settings.state_dir, prefix=f".{STATE_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps(asdict(state)))
        os.replace(partial, state_path(settings))
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def remove_engine_state(settings: Settings) -> None:
    state_path(settings).unlink(missing_ok=True)


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def locked_state_dir(
    settings: Settings, on_wait: Callable[[str], None] = lambda _: None, *, timeout: float = LOCK_TIMEOUT
) -> Iterator[None]:
    """Hold the state folder's lock (the OS's flock: released even if the holder is killed).

    The lock is on the folder itself, so taking it writes nothing. ``on_wait`` hears one line
    when another sandbox command holds it and this one waits.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # Opened close-on-exec (Python's default): the engine started under the lock never inherits it.
    descriptor = os.open(settings.state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if not _try_lock(descriptor):
            on_wait(f"another sandbox command holds {settings.state_dir}; waiting…")
            wait_until(
                lambda: _try_lock(descriptor),
                timeout=timeout,
                what=f"the other sandbox command to release {settings.state_dir}",
                max_interval=0.1,
            )
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock
