"""Local commands ignore the user's AWS settings: a profile unknown here, their own keys, a broken
~/.aws/config. Run through the `sandbox` console script against the session's engine."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from sandbox.settings import Settings
from sandbox.stack import LocalStack
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["unknown profile", "broken config"])
def users_env(
    request: pytest.FixtureRequest, engine_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The session engine's CLI environment, plus the user's AWS settings: AWS_PROFILE=nope (in no
    config file), their own keys, and a ~/.aws/config that is valid or does not even parse."""
    home = tmp_path_factory.mktemp("home")
    (home / ".aws").mkdir()
    if request.param == "broken config":
        (home / ".aws" / "config").write_text("[profile work\nregion = eu-west-1\n")
    else:
        (home / ".aws" / "config").write_text("[profile work]\nregion = eu-west-1\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env.update(
        SANDBOX_PORT=str(engine_settings.port),
        SANDBOX_STATE_DIR=str(engine_settings.state_dir),
        HOME=str(home),
        AWS_PROFILE="nope",
        AWS_ACCESS_KEY_ID="AKIAUSERSOWNKEY00000",
        AWS_SECRET_ACCESS_KEY="users-secret",
        AWS_SESSION_TOKEN="users-expired-token",
    )
    env.pop("AWS_CONFIG_FILE", None)
    env.pop("AWS_SHARED_CREDENTIALS_FILE", None)
    return env


def _json(env: dict[str, str], *args: str) -> Any:
    result: subprocess.CompletedProcess[str] = run_sandbox(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "profile" not in result.stderr
    return json.loads(result.stdout)


def test_local_commands_work_with_an_unknown_aws_profile(
    stack: LocalStack, users_env: dict[str, str]
) -> None:
    # GIVEN AWS_PROFILE=nope, the user's own keys, a ~/.aws/config without that profile (or broken)
    # WHEN the local commands run THEN they work as without them
    status = _json(users_env, "status")
    assert status["engine"]["running"] is True
    assert status["stack"]["outputs"]["OrdersTableName"] == stack.outputs["OrdersTableName"]
    order = _json(users_env, "order")
    assert order["status"] == "COMPLETED"
    # these two read the engine through boto3 clients (Step Functions, logs, DynamoDB, SQS)
    trace = _json(users_env, "trace", order["orderId"])
    assert (trace["orderId"], trace["status"]) == (order["orderId"], "COMPLETED")
    assert "deadLetters" in _json(users_env, "dlq")
