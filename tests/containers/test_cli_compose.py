"""`sandbox up --engine ...` as a person runs it: the console script, compose.yaml, then down."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.engine import compose, find_free_port
from tests.containers.conftest import chosen_engine, unavailable
from tests.integration.test_cli import SANDBOX, Cli

pytestmark = pytest.mark.containers


class ComposeCli(Cli):
    """Runs `sandbox` with a container engine, its own port and state folder."""

    def __init__(self, engine: str, image: str, state_dir: Path):
        super().__init__(find_free_port(), state_dir)
        self.engine = engine
        self.state_dir = state_dir
        self.env["SANDBOX_ENGINE"] = engine
        if engine == "localstack":
            repository, _, tag = image.rpartition(":")
            if repository != "localstack/localstack":
                unavailable(f"compose.yaml runs localstack/localstack:<LOCALSTACK_VERSION>, not {image}")
            self.env["LOCALSTACK_VERSION"] = tag
        else:
            self.env["SANDBOX_MINISTACK_IMAGE"] = image

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return super().run(*args, timeout=timeout)  # a container engine starts more slowly

    def project_containers(self) -> list[str]:
        project = compose.project_name(self.state_dir)
        listed = compose.run_command(
            ["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}"]
        )
        return listed.stdout.split()


@pytest.fixture(scope="module")
def cli(engine_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeCli]:
    try:
        compose.find_compose()
    except Exception as error:
        unavailable(f"no Docker Compose: {error}")
    runner = ComposeCli(chosen_engine(), engine_image, tmp_path_factory.mktemp("compose-state"))
    yield runner
    runner.run("down")


def test_up_starts_the_container_engine_through_compose_and_deploys(cli: ComposeCli) -> None:
    summary = cli.json("up")
    engine = summary["engine"]
    assert (engine["name"], engine["pid"], engine["isNew"]) == (cli.engine, None, True)
    assert engine["composeProject"] == compose.project_name(cli.state_dir)
    assert engine["endpoint"] == f"http://127.0.0.1:{cli.env['SANDBOX_PORT']}"
    assert summary["stack"]["isChanged"] is True
    assert summary["seededProducts"] == 5
    assert cli.project_containers() == [engine["container"][:12]]


def test_status_says_which_engine_runs(cli: ComposeCli) -> None:
    report = cli.json("status")
    assert report["engine"]["running"] is True
    assert report["engine"]["name"] == cli.engine
    assert report["stack"]["deployed"] is True
    text = cli.run("status").stdout
    assert f"RUNNING {cli.engine} container" in text
    assert "docker logs -f" in text


def test_orders_run_on_the_container_engine(cli: ComposeCli) -> None:
    assert cli.json("order")["status"] == "COMPLETED"
    failed = cli.json("order", "--fail", "payment")
    assert (failed["status"], failed["compensations"]) == ("FAILED", ["RefundPayment", "ReleaseInventory"])


def test_a_plain_up_redeploys_onto_the_running_engine(cli: ComposeCli) -> None:
    env_without_engine = {key: value for key, value in cli.env.items() if key != "SANDBOX_ENGINE"}
    result = subprocess.run(
        [SANDBOX, "up", "--json"],
        env=env_without_engine,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["engine"]["name"], summary["engine"]["isNew"]) == (cli.engine, False)
    assert summary["stack"]["isChanged"] is False


def test_down_removes_exactly_what_up_started(cli: ComposeCli) -> None:
    # GIVEN another container on the same daemon, not started by `sandbox up`
    bystander = compose.run_command(
        [
            "docker",
            "create",
            "--label",
            "saga-sandbox-test=bystander",
            cli.env.get("SANDBOX_MINISTACK_IMAGE", "x"),
        ]
        if cli.engine != "localstack"
        else [
            "docker",
            "create",
            "--label",
            "saga-sandbox-test=bystander",
            f"localstack/localstack:{cli.env['LOCALSTACK_VERSION']}",
        ]
    ).stdout.strip()
    try:
        # WHEN the engine is stopped
        result = cli.run("down", "--json")
        # THEN its compose project has no container left, and the bystander is untouched
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["stopped"] is True
        assert cli.project_containers() == []
        assert compose.inspect_container(bystander) is not None
        assert cli.json("status")["engine"]["running"] is False
        assert cli.run("down").stdout.strip() == "no sandbox engine was running"
    finally:
        compose.run_command(["docker", "rm", "--force", bystander])
