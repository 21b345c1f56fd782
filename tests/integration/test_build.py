"""A standard SAM project, built as sam build builds it, deploys and runs on the embedded engine."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox.deploy import deploy_stack, ensure_artifact_bucket, make_uploader
from sandbox.packaging import load_template, package_template
from sandbox.stack import LocalStack, physical_id

pytestmark = pytest.mark.integration

TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.11
    Timeout: 10
Resources:
  HelpersLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/helpers/
  ChargeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: payments/
      Handler: charge.lambda_handler
      Layers: [!Ref HelpersLayer]
  RefundFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: payments/
      Handler: refund.lambda_handler
  ShipFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: shipping/
      Handler: ship.lambda_handler
  Saga:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: statemachine/saga.asl.json
      DefinitionSubstitutions:
        ChargeArn: !GetAtt ChargeFunction.Arn
      Policies:
        - LambdaInvokePolicy: {FunctionName: !Ref ChargeFunction}
"""

# Module names no venv holds: an import can only come from the package root or the layer.
FILES = {
    "payments/charge.py": (
        "import probe_money\nimport probe_layer_helpers\n\n\n"
        "def lambda_handler(event, context):\n"
        "    return {'cents': probe_money.cents(event.get('amount', 1)), 'layer': probe_layer_helpers.NAME}\n"
    ),
    "payments/refund.py": "import probe_money\n\n\ndef lambda_handler(event, context):\n    return {'refunded': True}\n",
    "payments/probe_money.py": "def cents(amount):\n    return int(amount * 100)\n",
    "shipping/ship.py": "def lambda_handler(event, context):\n    return {'shipped': True}\n",
    "layers/helpers/python/probe_layer_helpers.py": "NAME = 'helpers from the layer'\n",
    "statemachine/saga.asl.json": json.dumps({
        "StartAt": "Charge",
        "States": {"Charge": {"Type": "Task", "Resource": "${ChargeArn}", "End": True}},
    }, indent=2),
}  # fmt: skip


def write_project(root: Path) -> Path:
    """A small SAM project in the standard layout (CodeUri: payments/, a python/ layer)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "template.yaml").write_text(TEMPLATE)
    for relative, text in FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def deploy_project(stack: LocalStack, region: str, project: Path, stack_name: str, cache_dir: Path) -> None:
    """Package the project with the sandbox's builder into a bucket on the engine, then deploy it."""
    bucket = f"{stack_name}-artifacts"
    s3 = stack.client("s3", region)
    ensure_artifact_bucket(s3, bucket, region)
    template = package_template(load_template(project / "template.yaml"), project, bucket,
                                make_uploader(s3, bucket), cache_dir=cache_dir)  # fmt: skip
    deploy_stack(stack.client("cloudformation", region), stack_name, template, {}, poll_seconds=0.1)


def invoke(stack: LocalStack, region: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = stack.client("lambda", region).invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return dict(body)


def test_a_standard_sam_project_imports_from_its_package_root_and_its_layer(
    stack: LocalStack, engine_settings: Any, tmp_path: Path
) -> None:
    # GIVEN CodeUri: payments/ + Handler: charge.lambda_handler, and a layer holding python/
    project = write_project(tmp_path / "project")
    stack_name = f"build-{uuid.uuid4().hex[:8]}"
    region = engine_settings.region
    # WHEN it is packaged by the sandbox's builder and deployed
    deploy_project(stack, region, project, stack_name, tmp_path / "cache")
    # THEN the handler imports charge and its sibling from the root, and helpers from the layer
    name = physical_id(stack, region, stack_name, "ChargeFunction")
    assert invoke(stack, region, name, {"amount": 2.5}) == {"cents": 250, "layer": "helpers from the layer"}
    # AND the state machine's definition was uploaded and its substitution resolved
    machine = physical_id(stack, region, stack_name, "Saga")
    definition = stack.client("stepfunctions", region).describe_state_machine(stateMachineArn=machine)[
        "definition"
    ]
    assert "${" not in definition and name in definition
