"""Container engines through compose, without Docker: `up` and `down` run exactly these commands."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine import EngineState, adopt_running_engine, compose, container, lifecycle, recorded_engine
from sandbox.engine.state import read_engine_state
from sandbox.errors import EngineError, ImagePullError, LocalStackLicenseError
from sandbox.settings import Settings
from tests.unit.fake_docker import docker_installer
from tests.unit.test_compose import COMMUNITY_HEALTH, LICENSE_LOG


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> Any:
    return docker_installer(monkeypatch)


@pytest.fixture
def container_settings(tmp_path: Path) -> Settings:
    return Settings.load(state_dir=tmp_path / "state", port=45999, engine="localstack")


@pytest.fixture
def stand_in_engine(container_settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A process working in the state folder, as the embedded engine does."""
    container_settings.state_dir.mkdir(parents=True)
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], cwd=container_settings.state_dir
    )
    yield process
    process.kill()
    process.wait()


def running_inspect(status: str = "running", exit_code: int = 0) -> tuple[int, str]:
    return 0, json.dumps({"Status": status, "ExitCode": exit_code}) + "|/proj-localstack-1"


def test_up_then_down_run_exactly_these_compose_commands(
    fake_docker: Any, container_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Docker with compose v1 only, and a LocalStack that offers every service
    fake = fake_docker(
        {
            "docker info": (0, "20.10.24"),
            "compose version": (1, "not a docker command"),
            " ps --all --quiet ": (0, "c0ffee\n"),
            "docker inspect": running_inspect(),
        }
    )
    monkeypatch.setattr(lifecycle, "is_port_in_use", lambda port: False)
    monkeypatch.setattr(
        container,
        "read_health",
        lambda url, path: {"services": dict.fromkeys(compose.LOCALSTACK_REQUIRED_SERVICES)},
    )
    # WHEN the engine is started, then stopped
    state, is_new = lifecycle.start_engine(container_settings)
    stopped = lifecycle.stop_engine(container_settings)
    # THEN compose ran for this state dir's project, and `down` removed exactly that project
    project = compose.project_name(container_settings.state_dir)
    base = ["docker-compose", "--file", str(container_settings.compose_path), "--project-name", project]
    compose_runs = [command for command in fake.commands if command[0] == "docker-compose"]
    assert compose_runs == [
        [*base, "--profile", "localstack", "up", "--detach", "localstack"],
        [*base, "--profile", "localstack", "ps", "--all", "--quiet", "localstack"],
        [*base, "--profile", "localstack", "down", "--volumes"],
    ]
    up_env = fake.envs[fake.commands.index(compose_runs[0])]
    assert up_env["SANDBOX_PORT"] == "45999"
    assert is_new
    assert (state.engine, state.pid, state.container_id, state.compose_project) == (
        "localstack",
        None,
        "c0ffee",
        project,
    )
    assert state.container_name == "proj-localstack-1"
    assert state.image == "localstack/localstack:4.14.0"
    assert stopped == state
    assert read_engine_state(container_settings) is None


def test_a_failed_pull_cleans_up_and_reports_one_error(
    fake_docker: Any, container_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_docker(
        {
            "docker info": (0, "20.10.24"),
            "compose version": (0, "v2"),
            " up --detach ": (1, "Error response from daemon: pull access denied for localstack/localstack"),
        }
    )
    monkeypatch.setattr(lifecycle, "is_port_in_use", lambda port: False)
    with pytest.raises(ImagePullError):
        lifecycle.start_engine(container_settings)
    assert fake.commands[-1][-2:] == ["down", "--volumes"]
    assert read_engine_state(container_settings) is None


def test_a_localstack_that_exits_for_its_token_is_reported_and_removed(
    fake_docker: Any, container_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_docker(
        {
            "docker info": (0, "20.10.24"),
            "compose version": (0, "v2"),
            " ps --all --quiet ": (0, "c0ffee\n"),
            "docker inspect": running_inspect("exited", 55),
            "docker logs": (0, LICENSE_LOG),
        }
    )
    monkeypatch.setattr(lifecycle, "is_port_in_use", lambda port: False)
    with pytest.raises(LocalStackLicenseError, match="needs an auth token"):
        lifecycle.start_engine(container_settings)
    assert fake.commands[-1][-2:] == ["down", "--volumes"]
    assert read_engine_state(container_settings) is None


def test_the_free_localstack_edition_starts(
    fake_docker: Any, container_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN LocalStack 4.14.0's free edition, whose health lists apigateway (REST APIs) but no v2
    fake_docker(
        {
            "docker info": (0, "20.10.24"),
            "compose version": (0, "v2"),
            " ps --all --quiet ": (0, "c0ffee\n"),
            "docker inspect": running_inspect(),
        }
    )
    monkeypatch.setattr(lifecycle, "is_port_in_use", lambda port: False)
    monkeypatch.setattr(container, "read_health", lambda url, path: COMMUNITY_HEALTH)
    # WHEN it is started THEN it is running and recorded: nothing the stack needs is missing
    state, is_new = lifecycle.start_engine(container_settings)
    assert is_new and state.engine == "localstack"
    assert read_engine_state(container_settings) == state


def test_a_localstack_without_a_service_the_stack_needs_is_refused_before_a_half_deploy(
    fake_docker: Any, container_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_docker(
        {
            "docker info": (0, "20.10.24"),
            "compose version": (0, "v2"),
            " ps --all --quiet ": (0, "c0ffee\n"),
            "docker inspect": running_inspect(),
        }
    )
    monkeypatch.setattr(lifecycle, "is_port_in_use", lambda port: False)
    services = {name: "available" for name in COMMUNITY_HEALTH["services"] if name != "stepfunctions"}
    monkeypatch.setattr(
        container, "read_health", lambda url, path: {**COMMUNITY_HEALTH, "services": services}
    )
    with pytest.raises(LocalStackLicenseError, match="does not offer stepfunctions"):
        lifecycle.start_engine(container_settings)
    assert fake.commands[-1][-2:] == ["down", "--volumes"]
    assert read_engine_state(container_settings) is None


def test_up_refuses_a_second_engine_of_another_kind(
    fake_docker: Any,
    container_settings: Settings,
    stand_in_engine: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a running embedded engine recorded in the state dir (a sleeping process in it stands in)
    embedded = EngineState("embedded", stand_in_engine.pid, 45999, "log", 0.0)
    (container_settings.state_dir / "engine.json").write_text(json.dumps(embedded.__dict__))
    # WHEN LocalStack is asked for THEN the error says to stop the running one first
    with pytest.raises(EngineError, match="embedded engine is already running") as caught:
        lifecycle.start_engine(container_settings)
    assert "sandbox down" in str(caught.value.hint)
    # AND a plain `sandbox up` (no engine chosen) adopts the running engine instead
    monkeypatch.delenv("SANDBOX_ENGINE", raising=False)
    adopted = adopt_running_engine(container_settings, is_chosen=False)
    assert adopted.engine == "embedded"
    assert adopt_running_engine(container_settings, is_chosen=True).engine == "localstack"


def test_an_old_state_file_without_container_fields_still_reads(tmp_path: Path) -> None:
    settings = Settings.load(state_dir=tmp_path)
    (tmp_path / "engine.json").write_text(
        json.dumps({"engine": "embedded", "pid": 1, "port": 4566, "log_path": "l", "started_at": 0})
    )
    recorded = recorded_engine(settings)
    assert recorded is not None
    assert recorded.engine.kind == "embedded"
    assert recorded.engine.describe(recorded.state) == "pid 1"
