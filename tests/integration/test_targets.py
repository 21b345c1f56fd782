"""Deploy and synth through the one Target shape, on the local engine: the library and the CLI."""

from __future__ import annotations

import json
import os

import pytest

from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.targets import LocalTarget, StackOptions, deploy, synth
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration


def local_target(stack: LocalStack, settings: Settings) -> LocalTarget:
    return LocalTarget(settings, stack.engine.endpoint_url, stack.engine.engine)


def test_deploying_an_unchanged_stack_changes_nothing_and_asks_nothing(
    stack: LocalStack, engine_settings: Settings
) -> None:
    # GIVEN the session's stack, deployed from this template
    asked: list[object] = []
    # WHEN the library deploys the same template to it again
    deployment = deploy(local_target(stack, engine_settings), confirm=lambda plan: asked.append(plan) or True)
    # THEN no change set was needed, nobody was asked, and the API is the one the stack serves
    assert deployment.result.is_changed is False and deployment.plan is None and asked == []
    assert deployment.api_url == stack.api_url
    assert deployment.to_json()["outputs"]["InventoryTableName"] == stack.outputs["InventoryTableName"]


def test_the_cli_deploys_and_synthesizes_through_the_same_target(
    stack: LocalStack, engine_settings: Settings
) -> None:
    env = {**os.environ, "SANDBOX_STATE_DIR": str(engine_settings.state_dir),
           "SANDBOX_PORT": str(engine_settings.port)}  # fmt: skip
    deployed = run_sandbox("deploy", "--target", "local", "--json", env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["isChanged"] is False
    assert json.loads(deployed.stdout)["apiUrl"] == stack.api_url
    synthesized = run_sandbox("synth", env=env)
    assert synthesized.returncode == 0, synthesized.stderr
    template = json.loads(synthesized.stdout)
    expected = synth(local_target(stack, engine_settings), "bucket", StackOptions())
    assert template["Resources"].keys() == expected.template["Resources"].keys()
    # (no fault switch among them: faults live in the engine, not in the template)
    assert synthesized.stderr == "rendered for parameters: ApiAuth=none\n"
