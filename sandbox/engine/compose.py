"""Docker and compose for the container engines: the command lines, and what their failures mean.

``sandbox.engine.container`` decides when a container engine starts and stops; this module knows
how Docker is asked (``docker compose``, or ``docker-compose`` where only v1 is installed) and
turns Docker's output into one line that says what happened and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import DockerUnavailableError, EngineError, ImagePullError, LocalStackLicenseError

# The last LocalStack release that starts without an auth token (since 2026-03-23 newer images,
# `latest` included, exit without one). compose.yaml pins the same default.
LOCALSTACK_FREE_VERSION = "4.14.0"
LOCALSTACK_LICENSE_EXIT_CODE = 55
_LICENSE_MARKERS = ("license activation failed", "localstack requires an account", "localstack_auth_token")
# Services of the template that a LocalStack edition must offer (names as its health check lists them).
LOCALSTACK_REQUIRED_SERVICES = (
    "apigateway",
    "cloudformation",
    "dynamodb",
    "dynamodbstreams",
    "events",
    "lambda",
    "s3",
    "sqs",
    "stepfunctions",
)
EMBEDDED_HINT = "or run without Docker: sandbox up --engine embedded"


@dataclass(frozen=True)
class ComposeService:
    """How one container engine is started: its compose profile and service, its health check."""

    name: str
    profile: str
    service: str
    health_path: str


CONTAINER_ENGINES = {
    "localstack": ComposeService("localstack", "localstack", "localstack", "/_localstack/health"),
    "ministack-docker": ComposeService("ministack-docker", "ministack", "ministack", "/_ministack/health"),
}


@dataclass(frozen=True)
class ContainerStatus:
    """What Docker says about one container."""

    status: str  # created, running, exited, ...
    exit_code: int
    name: str

    @property
    def is_running(self) -> bool:
        return self.status == "running"


def compose_service(name: str) -> ComposeService:
    """The container engine called ``name`` (EngineError for the embedded one or a typo)."""
    try:
        return CONTAINER_ENGINES[name]
    except KeyError as error:
        raise EngineError(f"{name} is not a container engine") from error


def project_name(state_dir: Path) -> str:
    """A compose project name unique to the state directory, so two sandboxes never collide."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return f"saga-sandbox-{digest}"


def run_command(
    command: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a docker or compose command, capturing its text output (the one seam tests replace)."""
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )


def find_executable(name: str) -> str | None:
    """The path of a command on PATH, or None."""
    return shutil.which(name)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def check_docker() -> str:
    """The Docker daemon's version; DockerUnavailableError when there is no CLI or no daemon."""
    if find_executable("docker") is None:
        raise DockerUnavailableError(
            "Docker is not installed (no `docker` command on PATH)",
            hint=f"install Docker to use a container engine, {EMBEDDED_HINT}",
        )
    try:
        result = run_command(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except subprocess.TimeoutExpired as error:
        raise DockerUnavailableError(
            "the Docker daemon did not answer `docker info` within 20 s",
            hint=f"check that Docker is running, {EMBEDDED_HINT}",
        ) from error
    if result.returncode != 0 or not result.stdout.strip():
        reason = _first_line(result.stderr) or "no answer"
        raise DockerUnavailableError(
            f"no Docker daemon is answering (docker info: {reason})",
            hint=f"start Docker (e.g. `sudo systemctl start docker`, or Docker Desktop), {EMBEDDED_HINT}",
        )
    return result.stdout.strip()


def find_compose() -> list[str]:
    """`docker compose` (v2) if the Docker CLI has it, else `docker-compose` (v1)."""
    if (
        find_executable("docker") is not None
        and run_command(["docker", "compose", "version"]).returncode == 0
    ):
        return ["docker", "compose"]
    if find_executable("docker-compose") is not None:
        return ["docker-compose"]
    raise DockerUnavailableError(
        "Docker Compose is not installed (neither `docker compose` nor `docker-compose` works)",
        hint=f"install the Docker Compose plugin (or docker-compose), {EMBEDDED_HINT}",
    )


def compose_command(
    compose: list[str], compose_file: Path, project: str, profile: str, *args: str
) -> list[str]:
    """One compose command line for the sandbox's project and the engine's profile."""
    return [*compose, "--file", str(compose_file), "--project-name", project, "--profile", profile, *args]


def up_args(engine: ComposeService) -> list[str]:
    """Start only the engine's service, detached (compose builds the MiniStack image if missing)."""
    return ["up", "--detach", engine.service]


def down_args() -> list[str]:
    """Remove the project's containers, network and anonymous volumes: exactly what `up` made."""
    return ["down", "--volumes"]


def ps_args(engine: ComposeService) -> list[str]:
    return ["ps", "--all", "--quiet", engine.service]  # --all: an engine that exited at once, too


def compose_environment(
    port: int,
    ministack_image: str,
    base: Mapping[str, str] | None = None,
    lambda_workers: int | None = None,
    time_scale: float | None = None,
) -> dict[str, str]:
    """The environment compose interpolates compose.yaml with (port, image, worker pool, saga clock;
    tokens pass through)."""
    env = dict(os.environ if base is None else base)
    env["SANDBOX_PORT"] = str(port)
    env["SANDBOX_MINISTACK_IMAGE"] = ministack_image
    if lambda_workers is not None:
        env["SANDBOX_LAMBDA_WORKERS"] = str(lambda_workers)
    if time_scale is not None:
        from sandbox.engine_patches.clock import time_scale_json

        env["SANDBOX_TIME_SCALE"] = str(time_scale_json(time_scale))
    return env


def localstack_image(env: Mapping[str, str] | None = None) -> str:
    """The LocalStack image compose.yaml names, with LOCALSTACK_VERSION applied."""
    version = (os.environ if env is None else env).get("LOCALSTACK_VERSION") or LOCALSTACK_FREE_VERSION
    return f"localstack/localstack:{version}"


_PULL_MARKERS = (
    "pull access denied",
    "manifest unknown",
    "manifest for",
    "repository does not exist",
    "no such host",
    "dial tcp",
    "tls handshake timeout",
    "i/o timeout",
    "toomanyrequests",
    "failed to resolve reference",
    "error pulling image",
    "failed to fetch",
    "temporary failure in name resolution",
    "network is unreachable",
)
_DAEMON_MARKERS = (
    "cannot connect to the docker daemon",
    "couldn't connect to docker daemon",
    "is the docker daemon running",
    "error while fetching server api version",
)
_PORT_MARKERS = ("port is already allocated", "address already in use")


def explain_compose_failure(output: str, *, engine: str, image: str, port: int) -> EngineError:
    """One clear error for a failed `compose up`, from what compose printed."""
    lowered = output.lower()
    details = _tail(output)
    if any(marker in lowered for marker in _DAEMON_MARKERS):
        return DockerUnavailableError(
            "no Docker daemon is answering",
            hint=f"start Docker (e.g. `sudo systemctl start docker`), {EMBEDDED_HINT}",
            details=details,
        )
    if any(marker in lowered for marker in _PORT_MARKERS):
        return EngineError(
            f"port {port} is already in use on this machine",
            hint="stop what uses it, or choose another port with --port or SANDBOX_PORT",
            details=details,
        )
    if any(marker in lowered for marker in _PULL_MARKERS):
        if engine == "localstack":
            hint = (
                f"check the network and the tag; pin LOCALSTACK_VERSION={LOCALSTACK_FREE_VERSION} "
                f"(the last tag that runs without a token), {EMBEDDED_HINT}"
            )
            return ImagePullError(f"could not pull the LocalStack image {image}", hint=hint, details=details)
        hint = (
            "compose builds it from docker/ministack/Dockerfile on SANDBOX_MINISTACK_BASE_IMAGE "
            "(default debian:bookworm-slim), which must be pullable or already present; "
            f"or build it yourself: make engine-image; {EMBEDDED_HINT}"
        )
        return ImagePullError(
            f"could not build or pull the MiniStack engine image {image}", hint=hint, details=details
        )
    return EngineError(
        f"docker compose could not start the {engine} engine: {_first_line(_tail(output, 1)) or 'no output'}",
        hint="see the engine log in the state directory (.sandbox/engine.log), or rerun with --debug",
        details=details,
    )


def is_license_exit(status: ContainerStatus, logs: str) -> bool:
    """Whether LocalStack exited because it has no auth token (exit 55, 'license activation failed')."""
    lowered = logs.lower()
    return status.exit_code == LOCALSTACK_LICENSE_EXIT_CODE or any(
        marker in lowered for marker in _LICENSE_MARKERS
    )


def explain_container_exit(engine: str, image: str, status: ContainerStatus, logs: str) -> EngineError:
    """One clear error for an engine container that exited while starting."""
    if engine == "localstack" and is_license_exit(status, logs):
        return LocalStackLicenseError(
            f"LocalStack ({image}) exited: this image needs an auth token (LocalStack's rule since 2026-03-23)",
            hint=(
                "set LOCALSTACK_AUTH_TOKEN to your token, or pin "
                f"LOCALSTACK_VERSION={LOCALSTACK_FREE_VERSION}, {EMBEDDED_HINT}"
            ),
            details=_tail(logs),
        )
    return EngineError(
        f"the {engine} engine container exited during start-up (exit code {status.exit_code})",
        hint=f"its last log lines follow; `docker logs {status.name}` shows all",
        details=_tail(logs),
    )


def missing_localstack_services(health: dict[str, Any]) -> list[str]:
    """Services the stack needs that this LocalStack's health check does not list."""
    services = health.get("services")
    if not isinstance(services, dict):
        return []
    return [name for name in LOCALSTACK_REQUIRED_SERVICES if name not in services]


def explain_missing_services(
    image: str, health: dict[str, Any], missing: list[str]
) -> LocalStackLicenseError:
    """The stack cannot deploy on this LocalStack: say which services lack."""
    edition = health.get("edition", "unknown")
    return LocalStackLicenseError(
        f"LocalStack {health.get('version', image)} ({edition} edition) does not offer {', '.join(missing)}, "
        "which the template needs",
        hint=(
            "start it with every service the stack needs (SERVICES in compose.yaml), "
            f"or use --engine ministack-docker, {EMBEDDED_HINT}"
        ),
    )


def inspect_container(container_id: str) -> ContainerStatus | None:
    """The container's state, or None when Docker no longer knows it."""
    result = run_command(["docker", "inspect", "--format", "{{json .State}}|{{.Name}}", container_id])
    if result.returncode != 0:
        return None
    state_json, _, name = result.stdout.strip().partition("|")
    try:
        state = json.loads(state_json)
    except ValueError:
        return None
    return ContainerStatus(
        str(state.get("Status", "unknown")), int(state.get("ExitCode", 0)), name.lstrip("/")
    )


def container_logs(container_id: str, lines: int = 40) -> str:
    """The container's last log lines (stdout and stderr), or '' when there are none."""
    result = run_command(["docker", "logs", "--tail", str(lines), container_id])
    return (result.stdout + result.stderr).strip()


_TOKEN_PATTERN = re.compile(r"(LOCALSTACK_AUTH_TOKEN=)\S+")


def redact(text: str) -> str:
    """Text with any LocalStack auth token masked (for logs and error details)."""
    return _TOKEN_PATTERN.sub(r"\1***", text)
