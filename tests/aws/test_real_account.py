"""Opt-in, against a real AWS account: deploy, one happy order, one `--fail payment` order, destroy.

Run with `SANDBOX_AWS_TESTS=1 pytest -m aws` and credentials for an account you may deploy to
(it creates a stack, an artifact bucket and, retained after destroy, four small tables).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

SANDBOX = str(Path(sys.executable).with_name("sandbox"))


def _skip_reason() -> str | None:
    if os.environ.get("SANDBOX_AWS_TESTS") != "1":
        return "opt-in: set SANDBOX_AWS_TESTS=1 to deploy to a real AWS account"
    if boto3.session.Session().get_credentials() is None:
        return "no AWS credentials found"
    return None


pytestmark = [pytest.mark.aws, pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


def test_real_account_round_trip() -> None:
    stage = f"e2e{uuid.uuid4().hex[:6]}"
    env = {key: value for key, value in os.environ.items() if key != "SANDBOX_AWS_ENDPOINT_URL"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SANDBOX, *args, "--target", "aws", "--stage", stage], env=env,
                              capture_output=True, text=True, timeout=1800, check=False)  # fmt: skip

    deployed = run("deploy", "--yes", "--enable-fault-injection", "--json")
    assert deployed.returncode == 0, deployed.stderr
    try:
        happy = run("order", "--json", "--wait-seconds", "300")
        assert happy.returncode == 0, happy.stderr
        assert json.loads(happy.stdout)["status"] == "COMPLETED"
        failing = run("order", "--fail", "payment", "--json", "--wait-seconds", "300")
        assert failing.returncode == 0, failing.stderr
        result = json.loads(failing.stdout)
        assert (result["status"], result["compensations"]) == ("FAILED", ["ReleaseInventory"])
    finally:
        destroyed = run("destroy", "--yes", "--json")
        assert destroyed.returncode == 0, destroyed.stderr
