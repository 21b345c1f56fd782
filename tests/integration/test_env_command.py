"""`eval "$(sandbox env)"`: another tool (here a plain boto3 script) reaches the stack with nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandbox.settings import Settings
from sandbox.stack import LocalStack
from tests.processes import SANDBOX

pytestmark = pytest.mark.integration

SCRIPT = """
import boto3, os
table = boto3.client("dynamodb").describe_table(TableName=os.environ["SANDBOX_ORDERS_TABLE"])["Table"]
print(table["TableName"], os.environ["SANDBOX_API_URL"])
"""


def test_a_boto3_script_reaches_the_stack_after_eval_of_sandbox_env(
    stack: LocalStack, engine_settings: Settings
):
    # GIVEN a shell whose own AWS settings point elsewhere
    env = {**os.environ, "SANDBOX_STATE_DIR": str(engine_settings.state_dir), "SANDBOX_PORT": str(engine_settings.port),
           "AWS_PROFILE": "nope", "AWS_DEFAULT_REGION": "ap-south-1"}  # fmt: skip
    # WHEN it evaluates `sandbox env` and runs a script that knows nothing of the sandbox
    shell = f"eval \"$({SANDBOX} env)\" && unset AWS_PROFILE && {sys.executable} -c '{SCRIPT}'"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=120)
    # THEN the script found the stack's orders table on the engine, and the API URL that answers here
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [stack.outputs["OrdersTableName"], stack.api_url]
    document = subprocess.run(
        [SANDBOX, "env", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert json.loads(document.stdout)["AWS_ENDPOINT_URL"] == stack.engine.endpoint_url
