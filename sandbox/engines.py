"""Local engines: start, find and stop the embedded MiniStack engine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.errors import EngineError, EngineNotRunningError, WaitTimeoutError
from sandbox.settings import Settings
from sandbox.waiting import wait_until

HEALTH_PATH = "/_ministack/health"
# Step Functions waits and retry sleeps are multiplied by this on local engines, so a 1 s + 2 s
# retry ladder takes 30 ms; the template's timings stay those AWS runs.
LOCAL_WAIT_SCALE = "0.01"
STATE_FILE = "engine.json"
LOG_FILE = "engine.log"


@dataclass(frozen=True)
class EngineState:
    """What `sandbox up` recorded about the engine it started."""

    engine: str
    pid: int
    port: int
    log_path: str
    started_at: float

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _state_path(settings: Settings) -> Path:
    return settings.state_dir / STATE_FILE


def read_engine_state(settings: Settings) -> EngineState | None:
    """The recorded engine, or None when none was started."""
    try:
        return EngineState(**json.loads(_state_path(settings).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def is_process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie of ours)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def is_engine_healthy(endpoint_url: str) -> bool:
    """Whether the engine answers its health check."""
    try:
        with urllib.request.urlopen(endpoint_url + HEALTH_PATH, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def read_log_tail(log_path: str | Path, lines: int = 15) -> str:
    """The last lines of the engine log, for error messages."""
    try:
        with open(log_path, errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip()
    except FileNotFoundError:
        return ""


def find_free_port() -> int:
    """A free TCP port on 127.0.0.1 (for tests and parallel engines)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def running_engine(settings: Settings) -> EngineState:
    """The engine `sandbox up` started, checked alive and healthy."""
    state = read_engine_state(settings)
    if state is None:
        raise EngineNotRunningError("no sandbox engine is running", hint="run `sandbox up` first")
    if not is_process_alive(state.pid):
        raise EngineNotRunningError(
            f"the engine `sandbox up` started (pid {state.pid}) has exited",
            hint="run `sandbox up` to start it again; its last log lines follow",
            details=read_log_tail(state.log_path),
        )
    if not is_engine_healthy(state.endpoint_url):
        raise EngineNotRunningError(
            f"the engine (pid {state.pid}) does not answer on port {state.port}",
            hint="run `sandbox down` then `sandbox up`",
            details=read_log_tail(state.log_path),
        )
    return state


def engine_environment(port: int) -> dict[str, str]:
    """The engine's environment: loopback only, dummy credentials, compressed saga waits."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "SANDBOX_"))}
    env.update(
        GATEWAY_PORT=str(port),
        BIND_HOST="127.0.0.1",  # an unauthenticated emulator must not listen on the network
        MINISTACK_HOST="127.0.0.1",
        SFN_WAIT_SCALE=LOCAL_WAIT_SCALE,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_engine(settings: Settings, *, timeout: float = 30) -> tuple[EngineState, bool]:
    """Start the embedded engine unless it already runs; return it and whether it is new."""
    existing = read_engine_state(settings)
    if existing and is_process_alive(existing.pid):
        return running_engine(settings), False
    if is_port_in_use(settings.port):
        raise EngineError(
            f"port {settings.port} is already in use by another process",
            hint="stop that process, or choose another port with --port or SANDBOX_PORT",
        )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / ".gitignore").write_text("*\n")
    log_path = settings.state_dir / LOG_FILE
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox.engine_patches"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.state_dir,
            env=engine_environment(settings.port),
            start_new_session=True,  # its own process group: `down` stops it and its workers
        )
    state = EngineState("embedded", process.pid, settings.port, str(log_path), time.time())
    _state_path(settings).write_text(json.dumps(asdict(state)))

    def is_ready() -> bool:
        if process.poll() is not None:
            raise EngineError(
                f"the engine exited during start-up (exit code {process.returncode})",
                hint=f"see the engine log: {log_path}",
                details=read_log_tail(log_path),
            )
        return is_engine_healthy(state.endpoint_url)

    try:
        wait_until(is_ready, timeout=timeout, what=f"the engine on port {settings.port}")
    except (EngineError, WaitTimeoutError):
        stop_engine(settings)
        raise
    return state, True


def stop_engine(settings: Settings, *, timeout: float = 10) -> EngineState | None:
    """Stop exactly the engine `up` started (its process group); None if none was running."""
    state = read_engine_state(settings)
    if state is None:
        return None
    try:
        if is_process_alive(state.pid):
            _signal_group(state.pid, signal.SIGTERM)
            try:
                wait_until(
                    lambda: not is_process_alive(state.pid),
                    timeout=timeout,
                    what=f"engine pid {state.pid} to stop",
                )
            except WaitTimeoutError:
                _signal_group(state.pid, signal.SIGKILL)
            # Lambda workers share the group; make sure none outlives the engine.
            _signal_group(state.pid, signal.SIGKILL)
    finally:
        _state_path(settings).unlink(missing_ok=True)
    return state


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
