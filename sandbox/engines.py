"""Local engines: start, find and stop the engine `sandbox up` runs.

The embedded engine is MiniStack as a subprocess of the sandbox. Container engines (LocalStack,
MiniStack in Docker) start through compose.yaml; ``sandbox.compose`` holds their command lines.
This module is the one place that decides how an engine starts, is found and stops.
"""

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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sandbox import compose
from sandbox.engine_patches import WORKERS_ENV
from sandbox.errors import EngineError, EngineNotRunningError, SandboxError, WaitTimeoutError
from sandbox.images import ministack_image
from sandbox.settings import Settings
from sandbox.waiting import wait_until

HEALTH_PATH = "/_ministack/health"
CONTAINER_START_TIMEOUT = (
    180  # health wait; LocalStack takes 10-30 s (an image build happens before, in `compose up`)
)
# Step Functions waits and retry sleeps are multiplied by this on local engines, so a 1 s + 2 s
# retry ladder takes 30 ms; the template's timings stay those AWS runs.
LOCAL_WAIT_SCALE = "0.01"
STATE_FILE = "engine.json"
LOG_FILE = "engine.log"


@dataclass(frozen=True)
class EngineState:
    """What `sandbox up` recorded about the engine it started."""

    engine: str
    pid: int | None  # the embedded engine's process; None for a container engine
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

    @property
    def is_container(self) -> bool:
        return self.compose_project is not None

    @property
    def health_path(self) -> str:
        return compose.container_engine(self.engine).health_path if self.is_container else HEALTH_PATH

    def describe(self) -> str:
        """`pid 123` or `container 1a2b3c4d5e6f`: what runs the engine."""
        if self.is_container:
            return f"container {(self.container_id or '?')[:12]}"
        return f"pid {self.pid}"


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


def is_engine_healthy(endpoint_url: str, health_path: str = HEALTH_PATH) -> bool:
    """Whether the engine answers its health check."""
    return read_health(endpoint_url, health_path) is not None


def read_health(endpoint_url: str, health_path: str = HEALTH_PATH) -> dict[str, Any] | None:
    """The engine's health document ({} when not JSON), or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(endpoint_url + health_path, timeout=2) as response:
            if response.status != 200:
                return None
            body = response.read()
    except (urllib.error.URLError, OSError):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


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


def is_engine_alive(state: EngineState) -> bool:
    """Whether what runs the engine (its process or its container) still runs."""
    if state.is_container:
        status = compose.inspect_container(state.container_id) if state.container_id else None
        return status is not None and status.is_running
    return state.pid is not None and is_process_alive(state.pid)


def running_engine(settings: Settings) -> EngineState:
    """The engine `sandbox up` started, checked alive and healthy."""
    state = read_engine_state(settings)
    if state is None:
        raise EngineNotRunningError("no sandbox engine is running", hint="run `sandbox up` first")
    if state.is_container:
        return _running_container(state)
    if state.pid is None or not is_process_alive(state.pid):
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


def _running_container(state: EngineState) -> EngineState:
    if not is_engine_alive(state):
        logs = compose.container_logs(state.container_id) if state.container_id else ""
        raise EngineNotRunningError(
            f"the {state.engine} engine container ({state.describe()}) is not running",
            hint="run `sandbox down` then `sandbox up`; its last log lines follow",
            details=compose.redact("\n".join(logs.splitlines()[-15:])),
        )
    if not is_engine_healthy(state.endpoint_url, state.health_path):
        raise EngineNotRunningError(
            f"the {state.engine} engine ({state.describe()}) does not answer on port {state.port}",
            hint=f"run `sandbox down` then `sandbox up`; `docker logs {state.container_name}` shows its log",
        )
    return state


def engine_environment(port: int, lambda_workers: int | None = None) -> dict[str, str]:
    """The engine's environment: loopback only, dummy credentials, compressed saga waits.

    ``lambda_workers`` caps each function's warm workers (sandbox.engine_patches reads it).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "SANDBOX_"))}
    if lambda_workers is not None:
        env[WORKERS_ENV] = str(lambda_workers)
    env.update(
        GATEWAY_PORT=str(port),
        BIND_HOST="127.0.0.1",  # an unauthenticated emulator must not listen on the network
        MINISTACK_HOST="127.0.0.1",
        SFN_WAIT_SCALE=LOCAL_WAIT_SCALE,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        # The user's AWS_* variables are dropped above; these keep the engine's and the handlers'
        # botocore from reading ~/.aws too, where a broken config file would fail every client.
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONUNBUFFERED="1",
    )
    return env


def start_engine(settings: Settings, *, timeout: float | None = None) -> tuple[EngineState, bool]:
    """Start the settings' engine unless one already runs; return it and whether it is new."""
    existing = read_engine_state(settings)
    if existing and is_engine_alive(existing):
        if existing.engine != settings.engine:
            raise EngineError(
                f"the {existing.engine} engine is already running ({existing.describe()}, port {existing.port})",
                hint=f"run `sandbox down` first, then `sandbox up --engine {settings.engine}`",
            )
        return running_engine(settings), False
    if existing:
        _discard_engine(settings)  # what is left of an engine that died: its container, its state
    is_container = settings.engine in compose.CONTAINER_ENGINES
    if is_container:
        compose.check_docker()
    if is_port_in_use(settings.port):
        raise EngineError(
            f"port {settings.port} is already in use by another process",
            hint="stop that process, or choose another port with --port or SANDBOX_PORT",
        )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / ".gitignore").write_text("*\n")
    if is_container:
        return _start_container(settings, timeout or CONTAINER_START_TIMEOUT), True
    return _start_embedded(settings, timeout or 30), True


def _start_embedded(settings: Settings, timeout: float) -> EngineState:
    log_path = settings.state_dir / LOG_FILE
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox.engine_patches"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.state_dir,
            env=engine_environment(settings.port, settings.lambda_workers),
            start_new_session=True,  # its own process group: `down` stops it and its workers
        )
    state = EngineState("embedded", process.pid, settings.port, str(log_path), time.time())
    _write_state(settings, state)

    def is_ready() -> bool:
        if process.poll() is not None:
            raise EngineError(
                f"the engine exited during start-up (exit code {process.returncode})",
                hint=f"see the engine log: {log_path}",
                details=read_log_tail(log_path),
            )
        return is_engine_healthy(state.endpoint_url)

    try:
        # Poll briskly: the engine is ready in about half a second and every 100 ms counts for `up`.
        wait_until(is_ready, timeout=timeout, what=f"the engine on port {settings.port}", max_interval=0.05)
    except (EngineError, WaitTimeoutError):
        stop_engine(settings)
        raise
    return state


def _write_state(settings: Settings, state: EngineState) -> None:
    _state_path(settings).write_text(json.dumps(asdict(state)))


def _compose(settings: Settings, state: EngineState, *args: str, timeout: float = 900) -> tuple[int, str]:
    """Run one compose command for the engine's project; return its exit code and output."""
    engine = compose.container_engine(state.engine)
    command = compose.compose_command(
        compose.find_compose(), settings.compose_path, str(state.compose_project), engine.profile, *args
    )
    env = compose.compose_environment(
        state.port,
        state.image or ministack_image(settings.project_dir),
        lambda_workers=settings.lambda_workers,
    )
    try:
        result = compose.run_command(command, env=env, cwd=settings.project_dir, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise EngineError(f"`{' '.join(command[:2])} {args[0]}` did not finish in {timeout:g} s") from error
    output = compose.redact(result.stdout + result.stderr)
    with open(state.log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n{output}\n")
    return result.returncode, output


def _start_container(settings: Settings, timeout: float) -> EngineState:
    engine = compose.container_engine(settings.engine)
    image = (
        compose.localstack_image() if engine.name == "localstack" else ministack_image(settings.project_dir)
    )
    log_path = settings.state_dir / LOG_FILE
    log_path.write_text("")
    state = EngineState(
        engine.name,
        None,
        settings.port,
        str(log_path),
        time.time(),
        compose_project=compose.project_name(settings.state_dir),
        image=image,
    )
    _write_state(settings, state)  # recorded first, so `down` can clean up whatever `up` got to
    try:
        code, output = _compose(settings, state, *compose.up_args(engine))
        if code != 0:
            raise compose.explain_compose_failure(output, engine=engine.name, image=image, port=settings.port)
        _, ids = _compose(settings, state, *compose.ps_args(engine), timeout=60)
        container_id = ids.strip().splitlines()[-1] if ids.strip() else ""
        status = compose.inspect_container(container_id) if container_id else None
        if status is None:
            raise EngineError(
                f"compose reported no {engine.service} container after `up`",
                hint=f"see the engine log: {log_path}",
                details=read_log_tail(log_path),
            )
        state = replace(state, container_id=container_id, container_name=status.name)
        _write_state(settings, state)
        _wait_for_container(state, timeout)
    except BaseException:
        _discard_engine(settings)
        raise
    return state


def _discard_engine(settings: Settings) -> None:
    """Remove what is left of an engine that failed or died; never hide the error that led here."""
    try:
        stop_engine(settings)
    except SandboxError:
        _state_path(settings).unlink(missing_ok=True)


def _wait_for_container(state: EngineState, timeout: float) -> None:
    """Wait until the container's engine answers its health check; explain an early exit."""
    container_id = str(state.container_id)

    def is_ready() -> dict[str, Any] | None:
        status = compose.inspect_container(container_id)
        if status is None or not status.is_running:
            logs = compose.container_logs(container_id)
            exited = status or compose.ContainerStatus("removed", -1, container_id[:12])
            raise compose.explain_container_exit(state.engine, str(state.image), exited, compose.redact(logs))
        return read_health(state.endpoint_url, state.health_path)

    health = wait_until(
        is_ready, timeout=timeout, what=f"the {state.engine} engine on port {state.port}", max_interval=1.0
    )
    if state.engine == "localstack":
        missing = compose.missing_localstack_services(health)
        if missing:
            raise compose.explain_missing_services(str(state.image), health, missing)


def stop_engine(settings: Settings, *, timeout: float = 10) -> EngineState | None:
    """Stop exactly the engine `up` started (its process group or compose project); None if none."""
    state = read_engine_state(settings)
    if state is None:
        return None
    if state.is_container:
        code, output = _compose(settings, state, *compose.down_args(), timeout=120)
        if code != 0:
            raise EngineError(
                f"could not stop the {state.engine} engine (compose project {state.compose_project})",
                hint="check that Docker runs, then run `sandbox down` again",
                details="\n".join(output.strip().splitlines()[-8:]),
            )
        _state_path(settings).unlink(missing_ok=True)
        return state
    try:
        if state.pid is not None and is_process_alive(state.pid):
            pid = state.pid
            _signal_group(pid, signal.SIGTERM)
            try:
                wait_until(
                    lambda: not is_process_alive(pid),
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


def adopt_running_engine(settings: Settings, *, is_chosen: bool) -> Settings:
    """The settings, with the running engine's name unless an engine was chosen (flag or env).

    So a plain `sandbox up` redeploys onto whichever engine runs instead of refusing it.
    """
    if is_chosen or os.environ.get("SANDBOX_ENGINE"):
        return settings
    state = read_engine_state(settings)
    if state is None or not is_engine_alive(state):
        return settings
    return replace(settings, engine=state.engine)
