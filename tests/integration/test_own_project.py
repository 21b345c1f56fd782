"""A project that is not the demo, run as its user runs it: `sandbox` in the project's folder.

The project is written here as a SAM user writes one: `CodeUri: greeter/` with
`Handler: app.lambda_handler` and its own requirements.txt, a required parameter that only its
samconfig.toml's `local` environment gives, an SSM-typed parameter that `--before-deploy` creates,
an unquoted format version, and a state machine whose Catch sends a failure to a compensation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine import find_free_port
from tests.files import write
from tests.processes import CLI_TIMEOUT, SANDBOX

pytestmark = pytest.mark.integration

TEMPLATE = """AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    AllowedValues: [local, prod]
  Greeting:
    Type: AWS::SSM::Parameter::Value<String>
    Default: /greeter/greeting
Globals:
  Function:
    Runtime: python3.11
    Timeout: 10
Resources:
  GreeterFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: greeter/
      Handler: app.lambda_handler
      Environment:
        Variables:
          STAGE: !Ref Stage
          GREETING: !Ref Greeting
  UndoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: greeter/
      Handler: app.undo
  GreetingSaga:
    Type: AWS::Serverless::StateMachine
    Properties:
      Policies:
        - LambdaInvokePolicy: {FunctionName: !Ref GreeterFunction}
        - LambdaInvokePolicy: {FunctionName: !Ref UndoFunction}
      Definition:
        StartAt: Greet
        States:
          Greet:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters: {FunctionName: "${Greeter}", Payload.$: "$"}
            OutputPath: $.Payload
            Catch:
              - {ErrorEquals: [GreetingRefused], ResultPath: $.error, Next: Undo}
            End: true
          Undo:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters: {FunctionName: "${Undo}", Payload.$: "$"}
            Next: Refused
          Refused:
            Type: Fail
            Error: GreetingRefused
      DefinitionSubstitutions:
        Greeter: !GetAtt GreeterFunction.Arn
        Undo: !GetAtt UndoFunction.Arn
Outputs:
  GreetingSagaArn:
    Value: !Ref GreetingSaga
"""
HANDLER = """import os

import six


class GreetingRefused(Exception):
    pass


def lambda_handler(event, context):
    if event.get("refuse"):
        print(f"refusing {event.get('name')}")
        raise GreetingRefused(f"no greeting for {event.get('name')}")
    print(f"greeting {event.get('name')}")
    return {"text": f"{os.environ['GREETING']}, {event.get('name')}", "stage": os.environ["STAGE"],
            "six": six.__version__}


def undo(event, context):
    print(f"undoing {event.get('name')}")
    return {"undone": True}
"""
SAMCONFIG = """version = 0.1
[default.deploy.parameters]
stack_name = "greeter-prod"
parameter_overrides = "Stage=prod"
[local.deploy.parameters]
stack_name = "greeter"
parameter_overrides = "Stage=local"
"""
# What `--before-deploy` runs: the SSM parameter the template's Greeting names, made with boto3.
PUT_GREETING = (
    f"{sys.executable} -c \"import boto3; boto3.client('ssm').put_parameter("
    "Name='/greeter/greeting', Value='Hello', Type='String', Overwrite=True)\""
)


class Project:
    """`sandbox` run in the project's folder, on an engine of its own."""

    def __init__(self, folder: Path, port: int):
        self.folder = folder
        self.env = {**os.environ, "SANDBOX_PORT": str(port), "NO_COLOR": "1", "COLUMNS": "200"}
        for name in (
            "SANDBOX_STATE_DIR",
            "SANDBOX_TEMPLATE_FILE",
            "SANDBOX_STACK_NAME",
            "SANDBOX_PROJECT_DIR",
        ):
            self.env.pop(name, None)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SANDBOX, *args], cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT, check=False)  # fmt: skip

    def json(self, *args: str, code: int = 0) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == code, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    folder = write(tmp_path_factory.mktemp("own") / "greeter_project", {
        "template.yaml": TEMPLATE, "samconfig.toml": SAMCONFIG,
        "greeter/app.py": HANDLER, "greeter/requirements.txt": "six==1.16.0\n",
    })  # fmt: skip
    runner = Project(folder, find_free_port())
    yield runner
    runner.run("down")


def test_a_wrong_parameter_is_one_line_before_anything_is_deployed(project: Project) -> None:
    result = project.run("up", "--parameter-overrides", "Stage=staging")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "error: parameter Stage='staging' is not allowed"
    assert "Traceback" not in result.stderr
    assert not (project.folder / ".sandbox" / "engine.json").exists()  # no engine was started either


def test_up_builds_and_deploys_the_project_after_its_before_deploy_command(project: Project) -> None:
    summary = project.json("up", "--before-deploy", PUT_GREETING)
    assert summary["stack"]["name"] == "greeter"  # samconfig's local environment
    assert summary["stack"]["isDemo"] is False
    assert summary["stack"]["template"] == str(project.folder / "template.yaml")
    assert (project.folder / ".sandbox" / "engine.json").is_file()  # the state lives beside the template
    status = project.json("status")
    assert status["stack"]["deployed"] and status["stack"]["name"] == "greeter"


def test_execute_runs_the_handler_from_its_own_package(project: Project) -> None:
    result = project.json("execute", "--input", '{"name": "Ada"}')
    # THEN the handler imported its module from the zip's root and its own six, and saw the
    # parameters: the one samconfig's local env gives, the one before-deploy put in SSM
    assert result["status"] == "SUCCEEDED"
    assert result["output"] == {"text": "Hello, Ada", "stage": "local", "six": "1.16.0"}


def test_a_refused_greeting_fails_is_compensated_and_traced(project: Project) -> None:
    failed = project.run("execute", "GreetingSaga", "--input", '{"name": "Bob", "refuse": true}')
    assert failed.returncode == 1, failed.stderr
    assert "Catch GreetingRefused" in failed.stdout and "↩ Undo" in failed.stdout
    trace = project.json("trace", "--last")
    assert [state["name"] for state in trace["states"]] == ["Greet", "Undo", "Refused"]
    logs = project.run("logs", "UndoFunction")
    assert logs.returncode == 0 and "undoing Bob" in logs.stdout


def test_the_demo_s_commands_say_so_in_one_line(project: Project) -> None:
    for command in (["order"], ["orders"], ["dlq"], ["reset"]):
        result = project.run(*command)
        assert result.returncode == 1, command
        assert result.stderr.startswith(f"error: `sandbox {command[0]}` works on the bundled order demo"), (
            command
        )
        assert "bug in the sandbox" not in result.stderr
    # AND chaos runs on any stack: with no demo orders to place, it asks in one line for the inputs
    chaos = project.run("chaos", "--orders", "1")
    assert chaos.returncode == 1
    error, hint = chaos.stderr.splitlines()
    assert error.startswith("error: say where the executions' inputs come from: --inputs FILE.jsonl")
    assert hint.startswith("hint: ")


def test_env_names_the_engine_and_the_project_s_outputs(project: Project) -> None:
    variables = project.json("env")
    assert variables["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{project.env['SANDBOX_PORT']}"
    assert variables["SANDBOX_GREETING_SAGA_ARN"].startswith("arn:aws:states:")
    assert "SANDBOX_API_URL" not in variables  # the project has no order API


def test_a_change_set_left_for_review_is_executed_later(project: Project) -> None:
    # GIVEN a change to the template's code, planned but not executed
    (project.folder / "greeter" / "app.py").write_text(HANDLER.replace("greeting {", "greeting again {"))
    planned = project.json("deploy", "--target", "local", "--no-execute-changeset")
    assert planned["changeSet"] and planned["changeSetArn"]
    assert project.json("execute", "--input", '{"name": "Cy"}')["status"] == "SUCCEEDED"
    # WHEN it is executed by name THEN the stack has the change
    deployed = project.json("deploy", "--target", "local", "--execute-changeset", planned["changeSet"])
    assert deployed["isChanged"] is True
