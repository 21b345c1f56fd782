"""`sandbox deploy --target aws` end to end, offline: the AWS code path pointed at the local engine."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from typing import Any

import boto3
import pytest

from sandbox.orders import call_api
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def aws_cli(stack: LocalStack, engine_settings: Settings) -> Any:
    """Runs `sandbox ... --target aws --endpoint-url <engine>` with throwaway credentials."""
    stage = f"it{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": engine_settings.region,
        "SANDBOX_STATE_DIR": str(engine_settings.state_dir),
        "SANDBOX_AWS_ENDPOINT_URL": stack.engine.endpoint_url,
    }
    env.pop("AWS_PROFILE", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_sandbox(*args, "--target", "aws", "--stage", stage, env=env, timeout=300)

    run.stage = stage  # type: ignore[attr-defined]
    return run


def test_deploy_order_and_destroy_through_the_aws_path(aws_cli: Any, stack: LocalStack) -> None:
    # WHEN the stack is deployed by the AWS path (dependencies built, artifacts uploaded, change set)
    deployed = aws_cli("deploy", "--yes", "--json")
    assert deployed.returncode == 0, deployed.stderr
    summary = json.loads(deployed.stdout)
    assert summary["isChanged"] is True
    assert summary["outputs"]["ApiAuth"] == "iam"
    assert {change["action"] for change in summary["changes"]} == {"Add"}
    # THEN a signed order through its API completes
    ordered = aws_cli("order", "--json")
    assert ordered.returncode == 0, ordered.stderr
    assert json.loads(ordered.stdout)["status"] == "COMPLETED"
    # AND faults are refused before anything is placed: AWS has no invoke-boundary hook (the
    # deployed stack is the business code alone), and the hint points at FIS
    refused = aws_cli("order", "--fail", "payment")
    assert refused.returncode == 1
    assert "AWS has no such hook" in refused.stderr and "sandbox faults export --fis" in refused.stderr
    assert "Traceback" not in refused.stderr
    # AND unsigned requests are refused by the IAM-protected API
    unsigned = call_api("POST", f"{summary['apiUrl']}/orders", body=b"{}")
    assert unsigned.status == 403
    # AND deploying again changes nothing
    again = aws_cli("deploy", "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["isChanged"] is False
    # WHEN the stack is destroyed
    destroyed = aws_cli("destroy", "--yes", "--json")
    assert destroyed.returncode == 0, destroyed.stderr
    report = json.loads(destroyed.stdout)
    # THEN it is gone, and the business tables it names were kept
    assert report["deleted"] is True
    assert set(report["retainedTables"]) == {
        "OrdersTableName", "InventoryTableName", "ReservationsTableName", "PaymentsTableName",
        "ShipmentsTableName"}  # fmt: skip
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.engine.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    orders_table = report["retainedTables"]["OrdersTableName"]
    assert dynamodb.describe_table(TableName=orders_table)["Table"]["TableStatus"] == "ACTIVE"
    cfn = boto3.client("cloudformation", endpoint_url=stack.engine.endpoint_url, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    stacks = [
        s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert f"saga-sandbox-{aws_cli.stage}" not in stacks


def test_deploy_without_yes_and_without_a_terminal_refuses(aws_cli: Any) -> None:
    result = aws_cli("deploy")
    assert result.returncode == 1
    assert "pass --yes" in result.stderr
    assert "Traceback" not in result.stderr
