"""Container engines without Docker: compose.yaml, the compose command lines, and their failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.debugging import CONTAINER_DEBUG_PORTS
from sandbox.engine import compose
from sandbox.engine_patches import PINNED_ENGINE_VERSION
from sandbox.errors import DockerUnavailableError, EngineError, ImagePullError, LocalStackLicenseError
from tests.unit.fake_docker import docker_installer

PROJECT_DIR = Path(__file__).resolve().parents[2]
LICENSE_LOG = """LocalStack version: 2026.3.1.dev3
Localstack returning with exit code 55. Reason:
===============================================
The license activation failed for the following reason:

No credentials were found in the environment. Please make sure to either set the LOCALSTACK_AUTH_TOKEN variable to a valid auth token.

LocalStack requires an account to run.
"""
COMMUNITY_HEALTH = {
    "edition": "community",
    "version": "4.14.0",
    "services": {
        name: "available"
        for name in [
            "apigateway",
            "cloudformation",
            "dynamodb",
            "dynamodbstreams",
            "events",
            "iam",
            "lambda",
            "logs",
            "s3",
            "sqs",
            "stepfunctions",
            "sts",
        ]
    },
}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT_DIR / "compose.yaml").read_text())["services"])


# ---------------------------------------------------------------- compose.yaml


def test_localstack_is_pinned_to_the_last_free_tag_never_latest(services: dict[str, Any]) -> None:
    localstack = services["localstack"]
    assert localstack["profiles"] == ["localstack"]
    assert localstack["image"] == "localstack/localstack:${LOCALSTACK_VERSION:-4.14.0}"
    assert compose.LOCALSTACK_FREE_VERSION == "4.14.0"
    assert "latest" not in localstack["image"]


def test_localstack_passes_the_auth_token_through_and_mounts_the_docker_socket(
    services: dict[str, Any],
) -> None:
    localstack = services["localstack"]
    assert "LOCALSTACK_AUTH_TOKEN=${LOCALSTACK_AUTH_TOKEN:-}" in localstack["environment"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"]
    wanted = set(compose.LOCALSTACK_REQUIRED_SERVICES)
    listed = next(item for item in localstack["environment"] if item.startswith("SERVICES="))
    assert wanted <= set(listed.removeprefix("SERVICES=").split(","))


@pytest.mark.parametrize(
    ("service", "health_path"), [("localstack", "/_localstack/health"), ("ministack", "/_ministack/health")]
)
def test_each_engine_has_a_healthcheck_and_is_published_on_loopback_only(
    services: dict[str, Any], service: str, health_path: str
) -> None:
    definition = services[service]
    assert any(health_path in part for part in definition["healthcheck"]["test"])
    assert definition["ports"][0] == "127.0.0.1:${SANDBOX_PORT:-4566}:4566"
    # MiniStack's also publishes the debug ports, each on a loopback port Docker picks
    debug_ports = [f"127.0.0.1::{port}" for port in CONTAINER_DEBUG_PORTS] if service == "ministack" else []
    assert definition["ports"][1:] == debug_ports
    engine = next(e for e in compose.CONTAINER_ENGINES.values() if e.service == service)
    assert engine.health_path == health_path
    assert engine.profile == service


def test_ministack_image_is_pinned_overridable_and_built_from_the_repo(services: dict[str, Any]) -> None:
    ministack = services["ministack"]
    assert ministack["profiles"] == ["ministack"]
    assert (
        ministack["image"] == f"${{SANDBOX_MINISTACK_IMAGE:-saga-sandbox-ministack:{PINNED_ENGINE_VERSION}}}"
    )
    assert (PROJECT_DIR / ministack["build"]["context"] / ministack["build"]["dockerfile"]).is_file()
    assert "SFN_WAIT_SCALE=0.01" in ministack["environment"]


def test_the_image_build_context_holds_what_the_dockerfile_copies() -> None:
    # GIVEN the files the Dockerfile COPYs
    dockerfile = (PROJECT_DIR / "docker/ministack/Dockerfile").read_text()
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    # THEN each is let through .dockerignore and is an input of the image's content hash
    allowed = [
        line.removeprefix("!").rstrip("/")
        for line in (PROJECT_DIR / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    from sandbox.images import MINISTACK_IMAGE_INPUTS

    inputs = {path.as_posix() for path in MINISTACK_IMAGE_INPUTS}
    for source in copied:
        assert any(source == entry or source.startswith(entry + "/") for entry in allowed), source
        if (PROJECT_DIR / source).is_dir():  # a package: every module of it is an input
            modules = {
                path.relative_to(PROJECT_DIR).as_posix() for path in (PROJECT_DIR / source).glob("*.py")
            }
            assert modules and modules <= inputs, source
            continue
        assert source in inputs
        assert (PROJECT_DIR / source).is_file()


# ---------------------------------------------------------------- command lines


def test_compose_command_names_file_project_and_profile() -> None:
    engine = compose.CONTAINER_ENGINES["localstack"]
    command = compose.compose_command(
        ["docker", "compose"],
        Path("/p/compose.yaml"),
        "saga-sandbox-abc",
        engine.profile,
        *compose.up_args(engine),
    )
    assert command == [
        "docker",
        "compose",
        "--file",
        "/p/compose.yaml",
        "--project-name",
        "saga-sandbox-abc",
        "--profile",
        "localstack",
        "up",
        "--detach",
        "localstack",
    ]


def test_down_removes_the_project_with_its_volumes_and_nothing_else() -> None:
    command = compose.compose_command(
        ["docker-compose"], Path("c.yaml"), "p", "ministack", *compose.down_args()
    )
    assert command == [
        "docker-compose",
        "--file",
        "c.yaml",
        "--project-name",
        "p",
        "--profile",
        "ministack",
        "down",
        "--volumes",
    ]


def test_project_name_is_stable_unique_per_state_dir_and_valid_for_compose(tmp_path: Path) -> None:
    first = compose.project_name(tmp_path / "a")
    assert first == compose.project_name(tmp_path / "a")
    assert first != compose.project_name(tmp_path / "b")
    assert first.startswith("saga-sandbox-")
    assert all(char.isalnum() or char == "-" for char in first)
    assert first == first.lower()


def test_compose_environment_sets_port_and_image_and_keeps_the_token() -> None:
    env = compose.compose_environment(4599, "img:1", base={"LOCALSTACK_AUTH_TOKEN": "tok", "PATH": "/bin"})
    assert env == {
        "LOCALSTACK_AUTH_TOKEN": "tok",
        "PATH": "/bin",
        "SANDBOX_PORT": "4599",
        "SANDBOX_MINISTACK_IMAGE": "img:1",
    }


def test_compose_environment_passes_the_worker_pool_size_into_the_engine() -> None:
    # GIVEN the settings' pool size WHEN composing THEN compose.yaml interpolates it into the container
    env = compose.compose_environment(4599, "img:1", base={}, lambda_workers=3)
    assert env["SANDBOX_LAMBDA_WORKERS"] == "3"
    ministack = yaml.safe_load((PROJECT_DIR / "compose.yaml").read_text())["services"]["ministack"]
    assert "SANDBOX_LAMBDA_WORKERS=${SANDBOX_LAMBDA_WORKERS:-}" in ministack["environment"]


def test_localstack_image_follows_localstack_version() -> None:
    assert compose.localstack_image({}) == "localstack/localstack:4.14.0"
    assert compose.localstack_image({"LOCALSTACK_VERSION": "2026.8"}) == "localstack/localstack:2026.8"


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> Any:
    return docker_installer(monkeypatch)


def test_compose_v2_is_preferred(fake_docker: Any) -> None:
    fake_docker({"compose version": (0, "Docker Compose version v2.29")})
    assert compose.find_compose() == ["docker", "compose"]


def test_compose_falls_back_to_docker_compose_v1(fake_docker: Any) -> None:
    fake_docker({"compose version": (1, "docker: 'compose' is not a docker command")})
    assert compose.find_compose() == ["docker-compose"]


def test_no_compose_at_all_is_one_clear_error(fake_docker: Any) -> None:
    fake_docker({"compose version": (1, "unknown command")}, executables={"docker"})
    with pytest.raises(DockerUnavailableError, match="Docker Compose is not installed") as caught:
        compose.find_compose()
    assert "--engine embedded" in str(caught.value.hint)


def test_no_docker_cli_is_one_clear_error(fake_docker: Any) -> None:
    fake_docker({}, executables=set())
    with pytest.raises(DockerUnavailableError, match="Docker is not installed") as caught:
        compose.check_docker()
    assert "--engine embedded" in str(caught.value.hint)


def test_no_docker_daemon_is_one_clear_error(fake_docker: Any) -> None:
    fake_docker({"docker info": (1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")})
    with pytest.raises(DockerUnavailableError, match="no Docker daemon is answering") as caught:
        compose.check_docker()
    assert "Cannot connect" in str(caught.value)
    assert "start Docker" in str(caught.value.hint)
    assert "--engine embedded" in str(caught.value.hint)


# ---------------------------------------------------------------- what failures mean


@pytest.mark.parametrize(
    "output",
    [
        'Pulling localstack (localstack/localstack:4.14.0)...\nGet "https://registry-1.docker.io/v2/": dial tcp: '
        "lookup registry-1.docker.io: no such host",
        "Error response from daemon: manifest for localstack/localstack:9.9 not found: manifest unknown",
        "Error response from daemon: pull access denied for localstack/nope, repository does not exist",
    ],
)
def test_a_localstack_image_that_cannot_be_pulled_says_to_pin_a_version(output: str) -> None:
    error = compose.explain_compose_failure(
        output, engine="localstack", image="localstack/localstack:9.9", port=1
    )
    assert isinstance(error, ImagePullError)
    assert str(error) == "could not pull the LocalStack image localstack/localstack:9.9"
    assert "LOCALSTACK_VERSION=4.14.0" in str(error.hint)
    assert "--engine embedded" in str(error.hint)


def test_a_ministack_image_that_cannot_be_built_names_the_base_and_make_target() -> None:
    output = (
        "Building ministack\nStep 2/13 : FROM ${BASE_IMAGE}\n"
        'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host\n'
        "Service 'ministack' failed to build : Build failed"
    )
    error = compose.explain_compose_failure(output, engine="ministack-docker", image="m:1", port=1)
    assert isinstance(error, ImagePullError)
    assert "m:1" in str(error)
    assert "make engine-image" in str(error.hint)
    assert "SANDBOX_MINISTACK_BASE_IMAGE" in str(error.hint)


def test_a_port_taken_outside_the_sandbox_says_which_port() -> None:
    output = "Error starting userland proxy: listen tcp4 127.0.0.1:4566: bind: address already in use"
    error = compose.explain_compose_failure(output, engine="localstack", image="x", port=4566)
    assert str(error) == "port 4566 is already in use on this machine"
    assert "--port" in str(error.hint)


def test_an_unknown_compose_failure_keeps_its_last_line() -> None:
    error = compose.explain_compose_failure(
        "first\nsomething odd happened", engine="localstack", image="x", port=1
    )
    assert type(error) is EngineError
    assert "something odd happened" in str(error)


def test_localstack_exiting_for_want_of_a_token_says_set_the_token_or_pin() -> None:
    status = compose.ContainerStatus("exited", 55, "p-localstack-1")
    error = compose.explain_container_exit("localstack", "localstack/localstack:latest", status, LICENSE_LOG)
    assert isinstance(error, LocalStackLicenseError)
    assert "needs an auth token" in str(error)
    assert "LOCALSTACK_AUTH_TOKEN" in str(error.hint)
    assert "LOCALSTACK_VERSION=4.14.0" in str(error.hint)
    assert "--engine embedded" in str(error.hint)


def test_any_other_early_exit_reports_the_exit_code_and_logs() -> None:
    status = compose.ContainerStatus("exited", 3, "p-ministack-1")
    error = compose.explain_container_exit("ministack-docker", "m:1", status, "Traceback...\nBoom")
    assert type(error) is EngineError
    assert "exit code 3" in str(error)
    assert error.details and "Boom" in error.details


def test_the_free_localstack_edition_offers_every_service_the_stack_needs() -> None:
    # The order API is a REST API (apigateway), which the free edition serves.
    assert compose.missing_localstack_services(COMMUNITY_HEALTH) == []
    assert compose.missing_localstack_services({}) == []


def test_a_localstack_without_a_service_the_stack_needs_is_explained() -> None:
    services = {name: state for name, state in COMMUNITY_HEALTH["services"].items() if name != "apigateway"}
    health = {**COMMUNITY_HEALTH, "services": services}
    assert compose.missing_localstack_services(health) == ["apigateway"]
    error = compose.explain_missing_services("localstack/localstack:4.14.0", health, ["apigateway"])
    assert "community edition" in str(error)
    assert "does not offer apigateway" in str(error)
    assert "SERVICES in compose.yaml" in str(error.hint)
    assert "--engine embedded" in str(error.hint)


def test_tokens_never_reach_logs() -> None:
    assert compose.redact("env LOCALSTACK_AUTH_TOKEN=ls-abc123 x") == "env LOCALSTACK_AUTH_TOKEN=*** x"
