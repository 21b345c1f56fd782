"""The sandbox stack on a local engine: bring it up, describe it, reach its API."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.clients import make_client
from sandbox.errors import DeployError, UsageError
from sandbox.orders import local_api_url
from sandbox.settings import Settings

# Deploying (packaging, the targets, the engine's start) loads in the functions that deploy:
# `sandbox order` and the other commands that only find the stack never pay for it.
if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

    from sandbox.deploy import DeployResult
    from sandbox.engine import EngineState
    from sandbox.targets import Deployment, PackagedStack

Progress = Callable[[str], None]
# The outputs only the bundled demo's stack has: the order commands, list, form and dead letters apply there.
DEMO_OUTPUTS = frozenset({"ApiId", "OrdersTableName", "StateMachineArn", "AuditQueueUrl", "EventBusName"})
BeforeDeploy = Callable[[dict[str, str]], None]


class DemoOnlyError(UsageError):
    """A command of the bundled order demo was run on another stack."""


def require_demo(settings: Settings, command: str) -> None:
    """Refuse, in one line, a command that only makes sense on the bundled order demo."""
    if not settings.is_demo:
        raise DemoOnlyError(
            f"`sandbox {command}` works on the bundled order demo; this project is {settings.template_path}",
            hint="run your state machines with `sandbox execute`, see them with `sandbox trace` and `sandbox logs`",
        )


@dataclass(frozen=True)
class LocalStack:
    """A stack deployed on a local engine."""

    engine: EngineState
    outputs: dict[str, str]
    name: str = ""  # the stack's name (what fault rules resolve their targets in)

    @property
    def is_demo(self) -> bool:
        """Whether the deployed stack is the order demo's (it has the outputs the demo's commands read).

        Settings.is_demo says whether the project's template is the bundled one, before anything
        is deployed; this says it of a stack, a copy of the demo's template included.
        """
        return set(self.outputs) >= DEMO_OUTPUTS

    @property
    def has_api(self) -> bool:
        """Whether the stack names its REST API in an ``ApiId`` output (the demo's order API does)."""
        return "ApiId" in self.outputs

    @property
    def api_url(self) -> str:
        if not self.has_api:
            raise DemoOnlyError("this stack has no ApiId output: it is not the order demo's stack")
        return local_api_url(self.engine.endpoint_url, self.outputs["ApiId"])

    def client(self, service: str, region: str) -> Any:
        return make_client(service, endpoint_url=self.engine.endpoint_url, region=region)


@dataclass(frozen=True)
class UpResult:
    """What `sandbox up` did and how long each part took."""

    stack: LocalStack
    is_new_engine: bool
    deploy: DeployResult | None
    seeded_products: int
    timings_ms: dict[str, int]


def deploy_local(
    settings: Settings,
    engine: EngineState,
    progress: Progress = lambda _: None,
    parameters: dict[str, str] | None = None,
    packaged: PackagedStack | None = None,
) -> Deployment:
    """Deploy the stack's template onto a running local engine (any endpoint) and seed the inventory."""
    from sandbox.targets import LocalTarget, deploy

    target = LocalTarget(
        settings, engine.endpoint_url, engine.engine, parameter_values=parameters, prepackaged=packaged,
        on_deployed=lambda outputs: remember_outputs(settings, engine, outputs),
    )  # fmt: skip
    return deploy(target, progress=progress)


def engine_environment_for_tools(settings: Settings, engine: EngineState) -> dict[str, str]:
    """What a command run against the engine needs: its endpoint, region and dummy credentials."""
    from sandbox.targets import LocalTarget

    return LocalTarget(settings, engine.endpoint_url, engine.engine).environment({})


def run_before_deploy(command: str, environment: dict[str, str]) -> None:
    """Run a shell command against the started engine (SSM parameters, another stack's table, ...)."""
    result = subprocess.run(
        command, shell=True, env={**os.environ, **environment}, capture_output=True, text=True
    )
    if result.returncode != 0:
        details = "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-8:])
        raise DeployError(
            f"--before-deploy command exited with {result.returncode}: {command}",
            hint="it runs with AWS_ENDPOINT_URL, AWS_REGION and dummy credentials of the engine",
            details=details or None,
        )


def bring_up(
    settings: Settings,
    progress: Progress = lambda _: None,
    notify: Progress = lambda _: None,
    before_deploy: BeforeDeploy | None = None,
) -> UpResult:
    """Start the engine if needed, deploy the stack (a no-op when unchanged), seed the demo's inventory.

    ``notify`` hears one line for each repair of the state folder (see sandbox.engine) and each
    note of the build; ``before_deploy`` gets the engine's environment once it answers.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sandbox.engine import start_engine
    from sandbox.packaging import load_template
    from sandbox.targets import package_artifacts, project_parameters

    timings: dict[str, int] = {}
    started = time.perf_counter()
    source = load_template(settings.template_path)
    parameters = project_parameters(settings, source)  # a wrong one is refused before the engine starts
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Packaging and loading boto3 need no engine: they run while the engine boots.
        packaging = pool.submit(package_artifacts, settings, source, parameters, settings.engine, notify)
        pool.submit(make_client, "cloudformation", endpoint_url=settings.endpoint_url, region=settings.region)
        try:
            engine, is_new = start_engine(settings, progress=progress, notify=notify)
        finally:
            if not packaging.done():
                progress("building functions")
            packaged = packaging.result()  # a packaging error outranks the engine's
        timings["engine"] = int((time.perf_counter() - started) * 1000)
    if before_deploy is not None:
        before_deploy(engine_environment_for_tools(settings, engine))
    mark = time.perf_counter()
    deployment = deploy_local(settings, engine, progress, packaged=packaged)
    timings["deploy"] = int((time.perf_counter() - mark) * 1000)
    timings["total"] = int((time.perf_counter() - started) * 1000)
    stack = LocalStack(engine, deployment.result.outputs, settings.stack_name)
    return UpResult(stack, is_new, deployment.result, deployment.seeded_products, timings)


def _outputs_path(settings: Settings) -> Path:
    return settings.state_dir / f"{settings.stack_name}.outputs.json"


def remember_outputs(settings: Settings, engine: EngineState, outputs: dict[str, str]) -> None:
    """Keep a deployment's outputs beside the engine's state, tied to that engine's run."""
    path = _outputs_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"engine": asdict(engine), "outputs": outputs}))
    partial.replace(path)  # atomic: a reader never sees half a file


def _remembered_outputs(settings: Settings, engine: EngineState) -> dict[str, str] | None:
    try:
        remembered = json.loads(_outputs_path(settings).read_text())
    except (OSError, ValueError):
        return None
    is_same_run = isinstance(remembered, dict) and remembered.get("engine") == asdict(engine)
    return dict(remembered["outputs"]) if is_same_run else None


def running_engine(settings: Settings) -> EngineState:
    """The engine `sandbox up` started, checked alive and healthy (sandbox.engine loads on first use)."""
    from sandbox.engine import running_engine as running

    return running(settings)


def read_outputs(cfn: CloudFormationClient, stack_name: str) -> dict[str, str]:
    """The deployed stack's outputs, from CloudFormation (sandbox.deploy loads on first use)."""
    from sandbox.deploy import read_outputs as read

    return read(cfn, stack_name)


def find_stack(settings: Settings) -> LocalStack:
    """The deployed stack on the running engine (errors say what to run).

    The outputs the last local deploy onto this very engine run recorded are used as they are:
    asking CloudFormation would cost the CLI boto3's import and a round trip on every command.
    """
    engine = running_engine(settings)
    outputs = _remembered_outputs(settings, engine)
    if outputs is None:
        cfn: CloudFormationClient = make_client(
            "cloudformation", endpoint_url=engine.endpoint_url, region=settings.region
        )
        outputs = read_outputs(cfn, settings.stack_name)
        remember_outputs(settings, engine, outputs)
    return LocalStack(engine, outputs, settings.stack_name)


RESET_TABLES = ("OrdersTableName", "InventoryTableName", "ReservationsTableName", "PaymentsTableName",
                "ShipmentsTableName", "IdempotencyTableName")  # fmt: skip
RESET_QUEUES = ("OutboxFailureQueueUrl", "AuditQueueUrl", "EventsDeadLetterQueueUrl")


def _delete_all_items(dynamodb: DynamoDBClient, table: str) -> int:
    """Delete every item of ``table``; return how many there were.

    boto3's batch writer (what ``Table.batch_writer()`` returns, here on the client's own keys)
    sends 25 deletes a request and sends again whatever DynamoDB left unprocessed.
    """
    from boto3.dynamodb.table import BatchWriter  # on first use: the CLI does not load boto3 to start

    keys = [part["AttributeName"] for part in dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]]
    deleted = 0
    with BatchWriter(table, dynamodb) as batch:
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression=", ".join(f"#k{i}" for i in range(len(keys))),
            ExpressionAttributeNames={f"#k{i}": k for i, k in enumerate(keys)},
        ):
            for item in page["Items"]:
                batch.delete_item(Key=item)
            deleted += len(page["Items"])
    return deleted


def reset_stack(stack: LocalStack, region: str) -> dict[str, Any]:
    """Empty the demo's tables and queues and reseed its inventory, without redeploying."""
    from sandbox.catalog import seed_inventory

    dynamodb: DynamoDBClient = stack.client("dynamodb", region)
    sqs: SQSClient = stack.client("sqs", region)
    deleted = {
        key.removesuffix("TableName"): _delete_all_items(dynamodb, stack.outputs[key]) for key in RESET_TABLES
    }
    for key in RESET_QUEUES:
        sqs.purge_queue(QueueUrl=stack.outputs[key])
    seeded = seed_inventory(dynamodb, stack.outputs["InventoryTableName"])
    return {
        "deletedItems": deleted,
        "purgedQueues": [k.removesuffix("Url") for k in RESET_QUEUES],
        "seededProducts": seeded,
    }


def physical_id(stack: LocalStack, region: str, stack_name: str, logical_id: str) -> str:
    """The physical name of one of the stack's resources (e.g. a function name)."""
    cfn: CloudFormationClient = stack.client("cloudformation", region)
    detail = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
    return str(detail["StackResourceDetail"]["PhysicalResourceId"])
