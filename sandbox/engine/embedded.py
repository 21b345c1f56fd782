"""The embedded engine: MiniStack as a subprocess of the sandbox, its Lambda workers beside it.

The engine runs in its own process group, with its working folder in the state folder and its
temp folder (where it unpacks each Lambda worker's code) inside it, so `down` finds every
process it started and every file it left, even when the record of it was lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.engine import probes
from sandbox.engine.state import LOG_FILE, EngineState, remove_engine_state, write_engine_state
from sandbox.errors import EngineError, EngineNotRunningError, WaitTimeoutError
from sandbox.settings import Settings
from sandbox.waiting import wait_until

HEALTH_PATH = "/_ministack/health"
# Step Functions waits and retry sleeps are multiplied by this on local engines, so a 1 s + 2 s
# retry ladder takes 30 ms; the template's timings stay those AWS runs.
LOCAL_WAIT_SCALE = "0.01"
ENGINE_MODULE = "sandbox.engine_patches"
TEMP_FOLDER = "tmp"  # the engine's TMPDIR, inside the state folder
START_TIMEOUT = 30.0
# The engine keeps everything in memory; its own graceful shutdown (closing listeners, joining
# threads) takes about 2 s that buy nothing here. Its workers exit at once on SIGTERM.
STOP_GRACE = 0.3


def engine_environment(
    port: int,
    lambda_workers: int | None = None,
    runtimes_dir: Path | None = None,
    time_scale: float | None = None,
) -> dict[str, str]:
    """The engine's environment: loopback only, dummy credentials, compressed saga waits.

    ``lambda_workers`` caps each function's warm workers (sandbox.engine_patches reads it);
    ``runtimes_dir`` holds the Lambda runtimes' launchers (sandbox.runtimes), which start each
    worker seeing what it would see on AWS; ``time_scale`` runs the saga's clock that many times
    faster (math.inf: waits skipped; sandbox.engine_patches.clock).
    """
    from sandbox.engine_patches import RUNTIMES_ENV, SERVER_ENV, WORKERS_ENV
    from sandbox.engine_patches.clock import TIME_SCALE_ENV, time_scale_json

    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "SANDBOX_"))}
    if lambda_workers is not None:
        env[WORKERS_ENV] = str(lambda_workers)
    if runtimes_dir is not None:
        env[RUNTIMES_ENV] = str(runtimes_dir)
    if time_scale is not None:
        env[TIME_SCALE_ENV] = str(time_scale_json(time_scale))
    if os.environ.get(
        SERVER_ENV
    ):  # the engine's HTTP server, for comparisons (sandbox.engine_patches.server)
        env[SERVER_ENV] = os.environ[SERVER_ENV]
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


class EmbeddedEngine:
    """MiniStack as a subprocess: no Docker; handlers run on the sandbox's own Python."""

    kind = "embedded"
    health_path = HEALTH_PATH

    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def temp_dir(self) -> Path:
        return self.settings.state_dir / TEMP_FOLDER

    def check_can_start(self) -> None:
        """Nothing to check: the engine is a dependency of the sandbox."""

    def start(self, timeout: float | None = None) -> EngineState:
        settings = self.settings
        log_path = settings.state_dir / LOG_FILE
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # what an engine that died left
        self.temp_dir.mkdir(parents=True)
        with open(log_path, "w") as log:
            from sandbox.runtimes import RUNTIMES_FOLDER

            process = subprocess.Popen(
                [sys.executable, "-m", ENGINE_MODULE],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=settings.state_dir,
                env={
                    **engine_environment(
                        settings.port,
                        settings.lambda_workers,
                        settings.cache_dir / RUNTIMES_FOLDER,
                        settings.time_scale,
                    ),
                    "TMPDIR": str(self.temp_dir),
                },
                start_new_session=True,  # its own process group: `down` stops it and its workers
            )
        state = EngineState(self.kind, process.pid, settings.port, str(log_path), time.time())
        write_engine_state(settings, state)  # recorded first, so `down` finds it whatever happens next

        def has_exited() -> EngineError:
            return EngineError(
                f"the engine exited during start-up (exit code {process.returncode})",
                hint=f"see the engine log: {log_path}",
                details=probes.read_log_tail(log_path),
            )

        def is_ready() -> bool:
            if process.poll() is not None:
                raise has_exited()
            return probes.is_engine_healthy(state.endpoint_url, HEALTH_PATH)

        try:
            # Poll briskly: the engine is ready in about half a second and every 100 ms counts for `up`.
            wait_until(
                is_ready,
                timeout=timeout or START_TIMEOUT,
                what=f"the engine on port {settings.port}",
                max_interval=0.05,
            )
            if process.poll() is not None:  # the answer came from another process on the port
                raise has_exited()
        except (EngineError, WaitTimeoutError):
            self.stop(state)
            remove_engine_state(settings)
            raise
        return state

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is still this folder's engine, not a process that reuses its number."""
        if not probes.can_list_processes():
            return True  # no /proc: trust the record, as the process group was made for it
        cwd = probes.process_cwd(pid)
        return cwd is not None and cwd == self.settings.state_dir.resolve()

    def is_alive(self, state: EngineState) -> bool:
        return state.pid is not None and probes.is_process_alive(state.pid) and self._is_ours(state.pid)

    def health(self, state: EngineState) -> dict[str, Any] | None:
        return probes.read_health(state.endpoint_url, HEALTH_PATH)

    def check_running(self, state: EngineState) -> EngineState:
        if not self.is_alive(state):
            raise EngineNotRunningError(
                f"the engine `sandbox up` started (pid {state.pid}) has exited",
                hint="run `sandbox up` to start it again; its last log lines follow",
                details=probes.read_log_tail(state.log_path),
            )
        if not probes.is_engine_healthy(state.endpoint_url, HEALTH_PATH):
            raise EngineNotRunningError(
                f"the engine (pid {state.pid}) does not answer on port {state.port}",
                hint="run `sandbox down` then `sandbox up`",
                details=probes.read_log_tail(state.log_path),
            )
        return state

    def _process_groups(self) -> set[int]:
        """Process groups running in this state folder: engines, and workers in the engine's temp folder."""
        state_dir = self.settings.state_dir.resolve()
        temp_dir = self.temp_dir.resolve()
        groups: set[int] = set()
        for pid, cwd in probes.processes_in(state_dir).items():
            is_engine = cwd == state_dir and ENGINE_MODULE in probes.process_command(pid)
            if is_engine or temp_dir in cwd.parents or cwd == temp_dir:
                group = probes.process_group(pid)
                if group is not None and group != os.getpgrp():
                    groups.add(group)
        return groups

    def stop(self, state: EngineState) -> None:
        groups = self._process_groups()
        if state.pid is not None and self.is_alive(state):
            groups.add(state.pid)  # the engine leads its own process group
        probes.stop_process_groups(groups, grace=STOP_GRACE)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def stop_strays(self) -> list[str]:
        groups = self._process_groups()
        probes.stop_process_groups(groups, grace=STOP_GRACE)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return [f"stopped an engine of {self.settings.state_dir} that no record named (process group {group})"
                for group in sorted(groups)]  # fmt: skip

    def describe(self, state: EngineState) -> str:
        return f"pid {state.pid}"

    def status_notes(self, state: EngineState) -> list[str]:
        return []
