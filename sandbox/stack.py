"""The sandbox stack on a local engine: bring it up, describe it, reach its API."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.catalog import seed_inventory
from sandbox.clients import make_client
from sandbox.deploy import DeployResult, deploy_stack, ensure_artifact_bucket, make_uploader, read_outputs
from sandbox.engines import EngineState, running_engine, start_engine
from sandbox.images import HANDLER_REQUIREMENTS
from sandbox.packaging import build_dependencies, lambda_platform, load_template, package_template
from sandbox.settings import Settings

LOCAL_PARAMETERS = {"FaultInjection": "enabled"}
LOCAL_POLL_SECONDS = 0.1  # a local engine applies a change set in well under a second
Progress = Callable[[str], None]


def artifact_bucket(stack_name: str) -> str:
    return f"{stack_name}-artifacts"


def local_api_url(endpoint_url: str, api_id: str) -> str:
    """Where a local engine serves the stack's HTTP API."""
    return f"{endpoint_url}/_aws/execute-api/{api_id}/$default"


@dataclass(frozen=True)
class LocalStack:
    """A stack deployed on a local engine."""

    engine: EngineState
    outputs: dict[str, str]

    @property
    def api_url(self) -> str:
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


def function_dependencies(settings: Settings, engine: str, template: dict[str, Any]) -> Path | None:
    """What each function zip must carry for ``engine``: None where the engine's Python has it.

    MiniStack (embedded or in Docker) runs the handlers on its own interpreter, which has the
    handlers' requirements; LocalStack runs them in real Lambda runtime containers, which do not.
    """
    if engine != "localstack":
        return None
    python_version, platform = lambda_platform(template)
    return build_dependencies(
        settings.project_dir / HANDLER_REQUIREMENTS, python_version, platform, settings.cache_dir
    )


def deploy_local(
    settings: Settings,
    engine: EngineState,
    progress: Progress,
    parameters: dict[str, str] | None = None,
) -> DeployResult:
    """Package the template's code into the engine's S3 and deploy it by change set."""
    s3 = make_client("s3", endpoint_url=engine.endpoint_url, region=settings.region)
    cfn = make_client("cloudformation", endpoint_url=engine.endpoint_url, region=settings.region)
    bucket = artifact_bucket(settings.stack_name)
    source = load_template(settings.template_path)
    dependencies = function_dependencies(settings, engine.engine, source)
    progress("packaging functions and state machine")
    ensure_artifact_bucket(s3, bucket, settings.region)
    template = package_template(
        source, settings.project_dir, bucket, make_uploader(s3, bucket), dependencies_dir=dependencies
    )
    progress(f"deploying stack {settings.stack_name}")
    return deploy_stack(
        cfn, settings.stack_name, template, parameters or LOCAL_PARAMETERS, poll_seconds=LOCAL_POLL_SECONDS
    )


def deploy_and_seed(
    settings: Settings, engine: EngineState, progress: Progress = lambda _: None
) -> tuple[LocalStack, DeployResult, int]:
    """Deploy the stack onto a running engine (any endpoint) and seed the demo inventory."""
    result = deploy_local(settings, engine, progress)
    stack = LocalStack(engine, result.outputs)
    progress("seeding the demo inventory")
    seeded = seed_inventory(stack.client("dynamodb", settings.region), result.outputs["InventoryTableName"])
    return stack, result, seeded


def bring_up(settings: Settings, progress: Progress = lambda _: None) -> UpResult:
    """Start the engine if needed, deploy the stack (a no-op when unchanged), seed inventory."""
    timings: dict[str, int] = {}
    started = time.perf_counter()
    progress(f"starting the {settings.engine} engine on port {settings.port}")
    engine, is_new = start_engine(settings)
    timings["engine"] = int((time.perf_counter() - started) * 1000)
    mark = time.perf_counter()
    stack, result, seeded = deploy_and_seed(settings, engine, progress)
    timings["deploy"] = int((time.perf_counter() - mark) * 1000)
    timings["total"] = int((time.perf_counter() - started) * 1000)
    return UpResult(stack, is_new, result, seeded, timings)


def find_stack(settings: Settings) -> LocalStack:
    """The deployed stack on the running engine (errors say what to run)."""
    engine = running_engine(settings)
    cfn = make_client("cloudformation", endpoint_url=engine.endpoint_url, region=settings.region)
    return LocalStack(engine, read_outputs(cfn, settings.stack_name))
