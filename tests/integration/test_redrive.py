"""Redrive: a step fails, its handler is fixed and hot reloaded, the redrive completes the saga without
repeating what succeeded, on the embedded engine with real handlers.

The demo's saga catches every failure and compensates, so its failed executions end in its Fail
state (a redrive restarts there and fails again, as on AWS). The scenario here is the one redrive
is for: a fulfilment saga whose shipping step has no Catch, failing on a bug in its handler (an
order without a carrier). Each step counts its effect in a table: the counts prove each applied once.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.executions import TERMINAL_STATUSES, history_of
from sandbox.histories import history_of_trace
from sandbox.redrives import ExecutionNotRedrivableError, redrive_execution
from sandbox.reload import Reloader
from sandbox.settings import Settings
from sandbox.stack import LocalStack, physical_id
from sandbox.trace import trace_execution
from sandbox.waiting import wait_until
from tests.integration.test_build import deploy_project
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration

TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.11
    Timeout: 10
    Environment:
      Variables:
        EFFECTS_TABLE: !Ref EffectsTable
Resources:
  EffectsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  ReserveFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fulfilment/
      Handler: reserve.lambda_handler
  ChargeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fulfilment/
      Handler: charge.lambda_handler
  ShipFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: shipping/
      Handler: ship.lambda_handler
  Fulfilment:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: statemachine/fulfilment.asl.json
      DefinitionSubstitutions:
        ReserveArn: !GetAtt ReserveFunction.Arn
        ChargeArn: !GetAtt ChargeFunction.Arn
        ShipArn: !GetAtt ShipFunction.Arn
"""

TRANSIENT = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.TooManyRequestsException"]


def _task(function: str, result_path: str, following: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": f"${{{function}}}",
            "Payload": {"order.$": "$.order", "execution.$": "$$.Execution.Name"},
        },
        "ResultSelector": {"result.$": "$.Payload"},
        "ResultPath": result_path,
        "Retry": [{"ErrorEquals": TRANSIENT, "IntervalSeconds": 1, "MaxAttempts": 2}],
    }
    state.update({"Next": following} if following else {"End": True})
    return state


DEFINITION = {
    "Comment": "Reserve -> Charge -> Ship; no Catch: a failure fails the execution, for a redrive to finish.",
    "StartAt": "Reserve",
    "States": {
        "Reserve": _task("ReserveArn", "$.reserved", "Charge"),
        "Charge": _task("ChargeArn", "$.charged", "Ship"),
        "Ship": _task("ShipArn", "$.shipped", None),
    },
}

EFFECT = """\
import os

import boto3


def apply(step, execution):
    \"\"\"Count this step's effect for the execution: a step run twice counts 2.\"\"\"
    table = boto3.resource("dynamodb").Table(os.environ["EFFECTS_TABLE"])
    table.update_item(
        Key={"id": f"{execution}#{step}"},
        UpdateExpression="ADD applied :one",
        ExpressionAttributeValues={":one": 1},
    )
"""

BROKEN_SHIP = """\
from effects import apply


def lambda_handler(event, context):
    carrier = event["order"]["carrier"]  # the bug: an order need not name its carrier
    apply("ship", event["execution"])
    return {"carrier": carrier}
"""
FIXED_SHIP = BROKEN_SHIP.replace('event["order"]["carrier"]', 'event["order"].get("carrier", "standard")')

FILES = {
    "fulfilment/effects.py": EFFECT,
    "fulfilment/reserve.py": (
        "from effects import apply\n\n\ndef lambda_handler(event, context):\n"
        '    apply("reserve", event["execution"])\n    return {"reserved": True}\n'
    ),
    "fulfilment/charge.py": (
        "from effects import apply\n\n\ndef lambda_handler(event, context):\n"
        '    apply("charge", event["execution"])\n    return {"charged": event["order"]["total"]}\n'
    ),
    "shipping/effects.py": EFFECT,
    "shipping/ship.py": BROKEN_SHIP,
    "statemachine/fulfilment.asl.json": json.dumps(DEFINITION, indent=2),
}


def write_fulfilment_project(root: Path) -> Path:
    for relative, text in FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    (root / "template.yaml").write_text(TEMPLATE)
    return root


class Fulfilment:
    """The fulfilment project deployed on the session's engine, as a test drives it."""

    def __init__(self, settings: Settings, stack: LocalStack):
        self.settings = settings
        self.stack = stack
        self.sfn = stack.client("stepfunctions", settings.region)
        self.machine = physical_id(stack, settings.region, settings.stack_name, "Fulfilment")
        table = physical_id(stack, settings.region, settings.stack_name, "EffectsTable")
        self.dynamodb = stack.client("dynamodb", settings.region)
        self.table = table

    def start(self) -> str:
        name = f"order-{uuid.uuid4().hex[:10]}"
        order = {"id": name, "total": "12.50"}
        arn = self.sfn.start_execution(
            stateMachineArn=self.machine, name=name, input=json.dumps({"order": order})
        )["executionArn"]
        return str(arn)

    def wait(self, arn: str) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            described = self.sfn.describe_execution(executionArn=arn)
            return dict(described) if described["status"] in TERMINAL_STATUSES else None

        return wait_until(ended, timeout=60, what=f"execution {arn} to end")

    def applied(self, arn: str) -> dict[str, int]:
        """How many times each step's effect was applied for the execution."""
        name = arn.rsplit(":", 1)[-1]
        counts = {}
        for step in ("reserve", "charge", "ship"):
            item = self.dynamodb.get_item(
                TableName=self.table, Key={"id": {"S": f"{name}#{step}"}}, ConsistentRead=True
            ).get("Item")
            counts[step] = int(item["applied"]["N"]) if item else 0
        return counts

    def fix_ship(self) -> None:
        """The developer's fix, saved and hot reloaded as `sandbox watch` pushes it."""
        handler = self.settings.project_dir / "shipping" / "ship.py"
        handler.write_text(FIXED_SHIP)
        updates = Reloader(self.settings, self.stack).apply([handler])
        assert [update.logical_id for update in updates] == ["ShipFunction"]


@pytest.fixture
def fulfilment(stack: LocalStack, engine_settings: Settings, tmp_path: Path) -> Fulfilment:
    project = write_fulfilment_project(tmp_path / "project")
    settings = replace(engine_settings, project_dir=project, template_file=None, cache_dir=tmp_path / "cache",
                       stack_name=f"redrive-{uuid.uuid4().hex[:6]}")  # fmt: skip
    deploy_project(stack, settings.region, project, settings.stack_name, settings.cache_dir)
    return Fulfilment(settings, LocalStack(stack.engine, {}))


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_a_redrive_after_a_hot_reloaded_fix_completes_the_saga_applying_each_step_once(
    fulfilment: Fulfilment,
) -> None:
    # GIVEN an execution that reserved and charged, then failed at Ship on the handler's bug
    arn = fulfilment.start()
    failed = fulfilment.wait(arn)
    assert (failed["status"], failed["error"]) == ("FAILED", "KeyError")
    assert failed["redriveCount"] == 0 and failed["redriveStatus"] == "REDRIVABLE"
    assert fulfilment.applied(arn) == {"reserve": 1, "charge": 1, "ship": 0}
    # WHEN it is redriven before the fix
    fulfilment.sfn.redrive_execution(executionArn=arn)
    again = fulfilment.wait(arn)
    # THEN only Ship ran again, and failed again: the steps that succeeded were not repeated
    assert (again["status"], again["redriveCount"]) == ("FAILED", 1)
    assert fulfilment.applied(arn) == {"reserve": 1, "charge": 1, "ship": 0}
    # WHEN the handler is fixed, hot reloaded, and the execution redriven as `sandbox redrive` does
    fulfilment.fix_ship()
    settings = fulfilment.settings
    result = redrive_execution(fulfilment.stack, settings.region, settings.stack_name, arn.rsplit(":", 1)[-1])
    # THEN the saga completed, each step's effect applied exactly once
    assert result.execution.status == "SUCCEEDED" and result.redrive_count == 2
    assert fulfilment.applied(arn) == {"reserve": 1, "charge": 1, "ship": 1}
    assert result.execution.output["shipped"]["result"] == {"carrier": "standard"}
    assert result.execution.output["charged"]["result"] == {"charged": "12.50"}  # Ship's input kept
    # AND the history goes on after each ExecutionRedriven, entering Ship only
    history = history_of(fulfilment.sfn, arn)
    assert [event["id"] for event in history] == list(range(1, len(history) + 1))
    redriven = [event for event in history if event["type"] == "ExecutionRedriven"]
    assert [event["executionRedrivenEventDetails"]["redriveCount"] for event in redriven] == [1, 2]
    assert result.execution.states == ["Reserve", "Charge", "Ship", "Ship", "Ship"]
    # AND DescribeExecution and ListExecutions report the redrives as AWS does
    described = fulfilment.sfn.describe_execution(executionArn=arn)
    assert described["redriveCount"] == 2 and described["redriveDate"] >= failed["stopDate"]
    assert described["redriveStatus"] == "NOT_REDRIVABLE"
    assert described["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven"
    (listed,) = fulfilment.sfn.list_executions(stateMachineArn=fulfilment.machine, redriveFilter="REDRIVEN")[
        "executions"
    ]
    assert (listed["executionArn"], listed["redriveCount"]) == (arn, 2)
    assert (
        fulfilment.sfn.list_executions(stateMachineArn=fulfilment.machine, redriveFilter="NOT_REDRIVEN")[
            "executions"
        ]
        == []
    )
    # AND the trace shows the redrives
    traced = trace_execution(fulfilment.stack, settings.region, settings.stack_name, arn)
    assert [(state.name, state.status, state.redrive) for state in traced.states] == [
        ("Reserve", "SUCCEEDED", 0),
        ("Charge", "SUCCEEDED", 0),
        ("Ship", "FAILED", 0),
        ("Ship", "FAILED", 1),
        ("Ship", "SUCCEEDED", 2),
    ]
    # AND its normalized history says which redrive entered each state
    document = history_of_trace(traced, injections=None)
    assert document["redriveCount"] == 2
    assert [(state["name"], state.get("redrive", 0)) for state in document["states"]][2:] == [
        ("Ship", 0),
        ("Ship", 1),
        ("Ship", 2),
    ]
    # AND a succeeded execution is refused with AWS's error, through boto3 and the CLI's library
    with pytest.raises(ClientError) as refused:
        fulfilment.sfn.redrive_execution(executionArn=arn)
    assert _code(refused) == "ExecutionNotRedrivable"
    with pytest.raises(ExecutionNotRedrivableError, match="Execution is SUCCEEDED and cannot be redriven"):
        redrive_execution(fulfilment.stack, settings.region, settings.stack_name, arn)


def test_what_cannot_be_redriven_is_refused_with_aws_errors_and_a_client_token_redrives_once(
    fulfilment: Fulfilment,
) -> None:
    sfn = fulfilment.sfn
    missing = fulfilment.machine.replace(":stateMachine:", ":execution:") + ":no-such-execution"
    # WHEN an unknown execution, or something that is not an execution ARN, is redriven
    with pytest.raises(ClientError) as unknown:
        sfn.redrive_execution(executionArn=missing)
    with pytest.raises(ClientError) as invalid:
        sfn.redrive_execution(executionArn=fulfilment.machine)
    # THEN AWS's errors answer
    assert (_code(unknown), _code(invalid)) == ("ExecutionDoesNotExist", "InvalidArn")
    # GIVEN a failed execution
    arn = fulfilment.start()
    fulfilment.wait(arn)
    # WHEN it is redriven twice with the same client token (a retried request)
    first = sfn.redrive_execution(executionArn=arn, clientToken="retried-request")["redriveDate"]
    second = sfn.redrive_execution(executionArn=arn, clientToken="retried-request")["redriveDate"]
    # THEN the second answers as the first, and the execution was redriven once
    assert first == second
    assert fulfilment.wait(arn)["redriveCount"] == 1
    # AND a new token redrives it again, here after the fix
    fulfilment.fix_ship()
    sfn.redrive_execution(executionArn=arn)
    described = fulfilment.wait(arn)
    assert described["status"] == "SUCCEEDED"
    assert fulfilment.applied(arn) == {"reserve": 1, "charge": 1, "ship": 1}


def test_concurrent_failed_executions_redriven_concurrently_each_complete_once(
    fulfilment: Fulfilment,
) -> None:
    # GIVEN several executions started at once, all failing at Ship
    arns: list[str] = []
    starters = [threading.Thread(target=lambda: arns.append(fulfilment.start())) for _ in range(6)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()
    assert [fulfilment.wait(arn)["status"] for arn in arns] == ["FAILED"] * 6
    # WHEN Ship is fixed and they are all redriven at once
    fulfilment.fix_ship()
    settings = fulfilment.settings
    results: dict[str, Any] = {}

    def redrive(arn: str) -> None:
        results[arn] = redrive_execution(fulfilment.stack, settings.region, settings.stack_name, arn)

    redrivers = [threading.Thread(target=redrive, args=(arn,)) for arn in arns]
    for thread in redrivers:
        thread.start()
    for thread in redrivers:
        thread.join()
    # THEN each completed on its first redrive, each step's effect applied once per execution
    assert sorted(results) == sorted(arns)
    assert {(r.execution.status, r.redrive_count) for r in results.values()} == {("SUCCEEDED", 1)}
    for arn in arns:
        assert fulfilment.applied(arn) == {"reserve": 1, "charge": 1, "ship": 1}


def test_sandbox_redrive_follows_the_redriven_execution_and_refuses_in_one_line(
    fulfilment: Fulfilment,
) -> None:
    settings = fulfilment.settings
    env = {
        **os.environ,
        "SANDBOX_PORT": str(settings.port),
        "SANDBOX_STATE_DIR": str(settings.state_dir),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    project = (
        "--template-file",
        str(settings.project_dir / "template.yaml"),
        "--stack-name",
        settings.stack_name,
    )
    # GIVEN a failed execution, and its handler fixed
    arn = fulfilment.start()
    fulfilment.wait(arn)
    fulfilment.fix_ship()
    name = arn.rsplit(":", 1)[-1]
    # WHEN `sandbox redrive NAME` runs
    shown = run_sandbox("redrive", name, *project, env=env)
    # THEN it waited for the redriven run and printed its trace, the redrive marked
    assert shown.returncode == 0, shown.stderr
    assert "⟳ redrive 1" in shown.stdout and "execution SUCCEEDED" in shown.stdout
    # WHEN it runs again, on the succeeded execution, with --json
    refused = run_sandbox("redrive", arn, "--json", *project, env=env)
    # THEN it exits 1 with one line saying why, in AWS's words
    assert refused.returncode == 1
    assert "cannot be redriven: Execution is SUCCEEDED and cannot be redriven" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert fulfilment.applied(arn) == {"reserve": 1, "charge": 1, "ship": 1}
