"""One container engine per test session, started by testcontainers on a random loopback port.

The engine is chosen by env: SANDBOX_TEST_ENGINE (ministack-docker, the default, or localstack)
and SANDBOX_TEST_ENGINE_IMAGE (default: the MiniStack image `make engine-image` builds, or
compose.yaml's pinned LocalStack). The stack is deployed by the same code path as on the embedded
engine (sandbox.stack.deploy_local), and the same scenario tests run against it.

Without a Docker daemon, or without the engine image, every test here is skipped with a reason
that says so; SANDBOX_REQUIRE_CONTAINERS=1 (CI) turns that skip into a failure.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from sandbox.debugging import CONTAINER_DEBUG_PORTS
from sandbox.engine import EngineState, compose, read_health
from sandbox.images import ministack_image
from sandbox.settings import ENGINES, Settings
from sandbox.stack import LocalStack, deploy_local
from sandbox.waiting import wait_until

# The integration suite's fixtures and helpers, reused as they are: they only need `stack`.
from tests.integration.conftest import (  # noqa: F401
    api,
    customer_id,
    dynamodb,
    giving_order_faults,
    make_product,
    place_with_faults,
    saga_input,
    tables,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
ENGINE_PORT = 4566
# The fixtures stop their own containers; Ryuk, testcontainers' reaper, needs an image pull.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

_summary: dict[str, float] = {}
_outcomes: dict[str, str] = {}
# Why container tests cannot run here: each reason is reported once, not once per test.
_unavailable_reasons: set[str] = set()


def is_required() -> bool:
    return os.environ.get("SANDBOX_REQUIRE_CONTAINERS") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip with the reason, or fail where container tests are required (CI)."""
    if is_required():
        pytest.fail(f"{reason} (SANDBOX_REQUIRE_CONTAINERS=1: container tests must run here)", pytrace=False)
    _unavailable_reasons.add(reason)
    pytest.skip(reason)


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def chosen_engine() -> str:
    engine = os.environ.get("SANDBOX_TEST_ENGINE") or "ministack-docker"
    if engine not in ENGINES or engine == "embedded":
        pytest.fail(f"SANDBOX_TEST_ENGINE={engine!r}: choose localstack or ministack-docker", pytrace=False)
    return engine


def chosen_image(engine: str) -> str:
    default = compose.localstack_image() if engine == "localstack" else ministack_image(PROJECT_DIR)
    return os.environ.get("SANDBOX_TEST_ENGINE_IMAGE") or default


def compose_service_environment(service: str) -> dict[str, str]:
    """The service's environment as compose.yaml sets it (${VAR:-default} resolved from os.environ)."""
    definition = yaml.safe_load((PROJECT_DIR / "compose.yaml").read_text())["services"][service]
    resolved: dict[str, str] = {}
    for item in definition.get("environment", []):
        key, _, value = item.partition("=")
        resolved[key] = re.sub(
            r"\$\{(\w+):-([^}]*)\}", lambda match: os.environ.get(match.group(1)) or match.group(2), value
        )
    return resolved


@pytest.fixture(scope="session")
def docker_client() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=15)
        client.ping()
    except Exception:  # the SDK raises several kinds; all mean "no daemon to talk to"
        # The SDK's message (a nested connection error) says no more than this and runs to a paragraph.
        unavailable(f"no Docker daemon: nothing answers at {docker_host()} (container tests need Docker)")
    return client


@pytest.fixture(scope="session")
def engine_image(docker_client: Any) -> str:
    import docker.errors

    engine = chosen_engine()
    image = chosen_image(engine)
    try:
        docker_client.images.get(image)
    except docker.errors.ImageNotFound:
        if engine != "localstack":
            unavailable(
                f"engine image {image} is not built: run `make engine-image` (see README, Container tests)"
            )
        try:
            docker_client.images.pull(image)
        except docker.errors.APIError as error:
            unavailable(f"cannot pull {image}: {error.explanation or error}")
    return image


def host_port(container: Any, port: int = ENGINE_PORT) -> int:
    """The loopback port Docker published the container's ``port`` on."""
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return int(wrapped.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


def make_container(engine: str, image: str) -> Any:
    """The engine's testcontainers container, configured as compose.yaml configures the service."""
    if engine == "localstack":
        from testcontainers.localstack import LocalStackContainer

        container = LocalStackContainer(image=image, region_name="us-east-1")
        for key, value in compose_service_environment("localstack").items():
            container.with_env(key, value)
        # Its Lambda runtime starts function containers through the host's Docker.
        container.with_volume_mapping("/var/run/docker.sock", "/var/run/docker.sock", "rw")
    else:
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(image)
        for key, value in compose_service_environment("ministack").items():
            container.with_env(key, value)
    # Published on 127.0.0.1 only, on a port Docker picks: never on the network, never colliding.
    # MiniStack's also publishes the ports `sandbox debug` listens on, as compose.yaml does.
    published = (ENGINE_PORT,) if engine == "localstack" else (ENGINE_PORT, *CONTAINER_DEBUG_PORTS)
    container.ports = {f"{port}/tcp": ("127.0.0.1", None) for port in published}
    return container


def wait_for_engine(container: Any, engine: str, image: str, endpoint_url: str) -> None:
    """Wait for the health check; an engine that exits is reported with its own log."""
    health_path = compose.CONTAINER_ENGINES[engine].health_path
    container_id = container.get_wrapped_container().id

    def is_ready() -> dict[str, Any] | None:
        status = compose.inspect_container(container_id)
        if status is None or not status.is_running:
            logs = compose.container_logs(container_id)
            exited = status or compose.ContainerStatus("removed", -1, container_id[:12])
            raise compose.explain_container_exit(engine, image, exited, compose.redact(logs))
        return read_health(endpoint_url, health_path)

    health = wait_until(
        is_ready, timeout=180, what=f"the {engine} container's health check", max_interval=1.0
    )
    if engine == "localstack":
        missing = compose.missing_localstack_services(health)
        if missing:
            raise compose.explain_missing_services(image, health, missing)


@pytest.fixture(scope="session")
def engine_container(engine_image: str) -> Iterator[tuple[Any, EngineState]]:
    from testcontainers.core.container import DockerContainer

    engine = chosen_engine()
    container = make_container(engine, engine_image)
    started = time.perf_counter()
    DockerContainer.start(container)  # the engine's own wait comes next (LocalStack's waits on a log line)
    try:
        port = host_port(container)
        state = EngineState(
            engine, None, port, "", time.time(), container_id=container.get_container_id(), image=engine_image
        )
        wait_for_engine(container, engine, engine_image, state.endpoint_url)
        _summary["engine_start_s"] = time.perf_counter() - started
        yield container, state
    finally:
        container.stop()


@pytest.fixture(scope="session")
def engine_settings(
    engine_container: tuple[Any, EngineState], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    _, state = engine_container
    return Settings.load(
        port=state.port, state_dir=tmp_path_factory.mktemp("container-state"), engine=state.engine
    )


@pytest.fixture(scope="session")
def stack(engine_container: tuple[Any, EngineState], engine_settings: Settings) -> LocalStack:
    _, state = engine_container
    started = time.perf_counter()
    deployed = LocalStack(state, deploy_local(engine_settings, state).outputs, engine_settings.stack_name)
    _summary["deploy_s"] = time.perf_counter() - started
    return deployed


@pytest.fixture
def order_faults(stack: LocalStack, engine_settings: Settings) -> Iterator[Any]:
    """The demo's faults as rules: the MiniStack image carries the sandbox's engine patch, LocalStack does not."""
    if engine_settings.engine == "localstack":
        pytest.skip("LocalStack has no fault hook: the demo's faults run on the sandbox's engine only")
    yield from giving_order_faults(stack, engine_settings.region)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skip for want of Docker or the image is reported from here, so pytest folds the skips of
    every test (those reused from the integration suite too) into one line per reason."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        if reason in _unavailable_reasons:
            report.longrepr = (__file__, None, f"Skipped: {reason}")  # type: ignore[assignment]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count this folder's tests and time, for the line CI prints (see pytest_terminal_summary)."""
    if not report.nodeid.startswith("tests/containers/"):
        return
    _summary["duration_s"] = _summary.get("duration_s", 0.0) + report.duration
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


# What a worker's fixtures measured, handed to the controller of an xdist run (it prints the line).
ENGINE_TIMINGS = ("engine_start_s", "deploy_s")


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["container_timings"] = {key: _summary[key] for key in ENGINE_TIMINGS if key in _summary}


@pytest.hookimpl(optionalhook=True)  # an xdist hook: called on the controller as each worker ends
def pytest_testnodedown(node: Any, error: object) -> None:
    _summary.update(getattr(node, "workeroutput", {}).get("container_timings", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "duration_s" not in _summary or hasattr(terminalreporter.config, "workerinput"):
        return  # an xdist worker counts nothing for the line: the controller gets every report
    outcomes = list(_outcomes.values())
    counts = ", ".join(f"{outcomes.count(key)} {key}" for key in ("passed", "failed", "skipped"))
    timings = f"{_summary['duration_s']:.1f}s in all"
    if "engine_start_s" in _summary:
        timings += (
            f", engine start {_summary['engine_start_s']:.1f}s, deploy {_summary.get('deploy_s', 0):.1f}s"
        )
    terminalreporter.write_line(
        f"container tests ({chosen_engine()}, {os.environ.get('SANDBOX_TEST_ENGINE_IMAGE') or 'default image'}): "
        f"{counts}; {timings}"
    )
