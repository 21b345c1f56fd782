"""Container engines (LocalStack, MiniStack in Docker): started and removed through compose.yaml.

Each state folder has its own compose project, so `down` removes exactly what its `up` made and
two sandboxes never collide.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import replace
from typing import Any

from sandbox.engine import compose
from sandbox.engine.probes import read_health, read_log_tail
from sandbox.engine.state import (
    LOG_FILE,
    EngineState,
    prepare_state_dir,
    remove_engine_state,
    write_engine_state,
)
from sandbox.errors import EngineError, EngineNotRunningError, SandboxError
from sandbox.images import ministack_image
from sandbox.settings import Settings
from sandbox.waiting import wait_until

# Health wait; LocalStack takes 10-30 s (an image build happens before, in `compose up`).
START_TIMEOUT = 180.0


class ContainerEngine:
    """An engine in a container, one compose profile of compose.yaml."""

    def __init__(self, settings: Settings, service: compose.ComposeService):
        self.settings = settings
        self.service = service
        self.kind = service.name
        self.health_path = service.health_path

    def _image(self, state: EngineState | None = None) -> str:
        if state is not None and state.image:
            return state.image
        if self.kind == "localstack":
            return compose.localstack_image()
        return ministack_image(self.settings.project_dir)

    def _compose(self, state: EngineState, *args: str, timeout: float = 900) -> tuple[int, str]:
        """Run one compose command for the engine's project; return its exit code and output."""
        settings = self.settings
        command = compose.compose_command(
            compose.find_compose(),
            settings.compose_path,
            str(state.compose_project),
            self.service.profile,
            *args,
        )
        env = compose.compose_environment(
            state.port,
            self._image(state),
            lambda_workers=settings.lambda_workers,
            time_scale=settings.time_scale,
        )
        try:
            result = compose.run_command(command, env=env, cwd=settings.project_dir, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise EngineError(
                f"`{' '.join(command[:2])} {args[0]}` did not finish in {timeout:g} s"
            ) from error
        output = compose.redact(result.stdout + result.stderr)
        with open(state.log_path, "a") as log:
            log.write(f"$ {' '.join(command)}\n{output}\n")
        return result.returncode, output

    def check_can_start(self) -> None:
        compose.check_docker()

    def start(self, timeout: float | None = None) -> EngineState:
        settings = self.settings
        image = self._image()
        log_path = settings.state_dir / LOG_FILE
        log_path.write_text("")
        state = EngineState(
            self.kind,
            None,
            settings.port,
            str(log_path),
            time.time(),
            compose_project=compose.project_name(settings.state_dir),
            image=image,
        )
        write_engine_state(settings, state)  # recorded first, so `down` can clean up whatever `up` got to
        try:
            code, output = self._compose(state, *compose.up_args(self.service))
            if code != 0:
                raise compose.explain_compose_failure(
                    output, engine=self.kind, image=image, port=settings.port
                )
            _, ids = self._compose(state, *compose.ps_args(self.service), timeout=60)
            container_id = ids.strip().splitlines()[-1] if ids.strip() else ""
            status = compose.inspect_container(container_id) if container_id else None
            if status is None:
                raise EngineError(
                    f"compose reported no {self.service.service} container after `up`",
                    hint=f"see the engine log: {log_path}",
                    details=read_log_tail(log_path),
                )
            state = replace(state, container_id=container_id, container_name=status.name)
            write_engine_state(settings, state)
            self._wait_until_healthy(state, timeout or START_TIMEOUT)
        except BaseException:
            with contextlib.suppress(SandboxError):  # never hide the error that led here
                self.stop(state)
            remove_engine_state(settings)
            raise
        return state

    def _wait_until_healthy(self, state: EngineState, timeout: float) -> None:
        """Wait until the container's engine answers its health check; explain an early exit."""
        container_id = str(state.container_id)

        def is_ready() -> dict[str, Any] | None:
            status = compose.inspect_container(container_id)
            if status is None or not status.is_running:
                logs = compose.container_logs(container_id)
                exited = status or compose.ContainerStatus("removed", -1, container_id[:12])
                raise compose.explain_container_exit(
                    self.kind, str(state.image), exited, compose.redact(logs)
                )
            return self.health(state)

        health = wait_until(
            is_ready, timeout=timeout, what=f"the {self.kind} engine on port {state.port}", max_interval=1.0
        )
        if self.kind == "localstack":
            missing = compose.missing_localstack_services(health)
            if missing:
                raise compose.explain_missing_services(str(state.image), health, missing)

    def is_alive(self, state: EngineState) -> bool:
        status = compose.inspect_container(state.container_id) if state.container_id else None
        return status is not None and status.is_running

    def health(self, state: EngineState) -> dict[str, Any] | None:
        return read_health(state.endpoint_url, self.health_path)

    def check_running(self, state: EngineState) -> EngineState:
        if not self.is_alive(state):
            logs = compose.container_logs(state.container_id) if state.container_id else ""
            raise EngineNotRunningError(
                f"the {state.engine} engine container ({self.describe(state)}) is not running",
                hint="run `sandbox down` then `sandbox up`; its last log lines follow",
                details=compose.redact("\n".join(logs.splitlines()[-15:])),
            )
        if self.health(state) is None:
            raise EngineNotRunningError(
                f"the {state.engine} engine ({self.describe(state)}) does not answer on port {state.port}",
                hint=f"run `sandbox down` then `sandbox up`; `docker logs {state.container_name}` shows its log",
            )
        return state

    def stop(self, state: EngineState) -> None:
        code, output = self._compose(state, *compose.down_args(), timeout=120)
        if code != 0:
            raise EngineError(
                f"could not stop the {state.engine} engine (compose project {state.compose_project})",
                hint="check that Docker runs, then run `sandbox down` again",
                details="\n".join(output.strip().splitlines()[-8:]),
            )

    def stop_strays(self) -> list[str]:
        """Remove this folder's compose project when no record names it (nothing without Docker)."""
        project = compose.project_name(self.settings.state_dir)
        if compose.find_executable("docker") is None:
            return []
        try:
            listed = compose.run_command(
                ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"], timeout=20
            )
        except subprocess.TimeoutExpired:
            return []
        if listed.returncode != 0 or not listed.stdout.strip():
            return []
        # No record: what `down` needs to name the project, from the state folder alone.
        prepare_state_dir(self.settings)
        unrecorded = EngineState(
            self.kind, None, self.settings.port, str(self.settings.state_dir / LOG_FILE), time.time(),
            compose_project=project,
        )  # fmt: skip
        self._compose(unrecorded, "down", "--volumes", "--remove-orphans", timeout=120)
        return [
            f"removed containers of {self.settings.state_dir} that no record named (compose project {project})"
        ]

    def describe(self, state: EngineState) -> str:
        return f"container {(state.container_id or '?')[:12]}"

    def status_notes(self, state: EngineState) -> list[str]:
        notes = [f"image {state.image}; logs: docker logs -f {state.container_name}"]
        if self.kind == "localstack" and shutil.which("localstack"):
            notes.append(
                f"LocalStack CLI: MAIN_CONTAINER_NAME={state.container_name} localstack logs -f; "
                "localstack status services"
            )
        return notes
