"""Where a stack lives: the local engine or an AWS account, behind one ``Target`` shape.

A target owns its clients, its packaging, its template parameters and its API URL; ``deploy``
and ``synth`` are written once against it. The CLI, the console and the pytest plugin choose a
target and call these functions; none of them branch on where the stack lives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from sandbox.aws import (
    API_STAGE,
    AwsSession,
    AwsTarget,
    api_url,
    artifact_bucket_name,
    aws_parameters,
    package_for_aws,
    prepare_artifacts,
    seed_aws_inventory,
)
from sandbox.build import machine_architecture
from sandbox.catalog import seed_inventory
from sandbox.clients import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, make_client
from sandbox.deploy import (
    ChangeSetPlan,
    DeployResult,
    delete_stack,
    discard_plan,
    ensure_artifact_bucket,
    execute_plan,
    make_uploader,
    plan_change_set,
    read_changes,
    read_outputs,
    stack_status,
)
from sandbox.errors import DeployError
from sandbox.packaging import function_runtimes, load_template, package_template
from sandbox.runtimes import RUNTIMES_FOLDER, prepare_runtimes
from sandbox.samconfig import resolve_parameters
from sandbox.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_s3 import S3Client

Progress = Callable[[str], None]
Upload = Callable[[str, bytes], None]

LOCAL_POLL_SECONDS = 0.1  # a local engine applies a change set in well under a second


def artifact_bucket(stack_name: str) -> str:
    return f"{stack_name}-artifacts"


def project_parameters(
    settings: Settings, template: dict[str, Any], *, is_local: bool = True
) -> dict[str, str]:
    """The template's parameter values: the command line's over samconfig's (merged), checked."""
    samconfig = settings.samconfig(is_local=is_local)
    return resolve_parameters(
        template,
        samconfig.parameter_overrides,
        settings.parameter_overrides,
        source=settings.template_path.name,
    )


def project_tags(settings: Settings, *, is_local: bool = True) -> dict[str, str]:
    """The stack's tags: the command line's over samconfig's."""
    return {**settings.samconfig(is_local=is_local).tags, **settings.tags}


_AWS_API_URL = re.compile(
    r"https://(?P<api>[a-z0-9]+)\.execute-api\.[a-z0-9-]+\.amazonaws\.com(?P<path>/\S*)?"
)


def local_outputs(outputs: dict[str, str], endpoint_url: str) -> dict[str, str]:
    """The outputs with each API Gateway URL the stack names as on AWS (``https://ID.execute-api.
    REGION.amazonaws.com/Prod/``) turned into the URL that answers on the local engine."""

    def local(value: str) -> str:
        found = _AWS_API_URL.fullmatch(value)
        if found is None:
            return value
        return f"{endpoint_url}/_aws/execute-api/{found['api']}{found['path'] or '/'}"

    return {key: local(value) for key, value in outputs.items()}


def local_api_url(endpoint_url: str, api_id: str) -> str:
    """Where a local engine serves the stack's REST API: its stage, by path."""
    return f"{endpoint_url}/_aws/execute-api/{api_id}/{API_STAGE}"


# The Python of the MiniStack engine image (Debian bookworm's), which runs its handlers.
CONTAINER_ENGINE_PYTHON = "3.11"


@dataclass(frozen=True)
class BuildOptions:
    """How a local engine's functions are built: for the interpreter and machine that run them."""

    python_version_for: Callable[[str], str] | None
    architecture: str | None


def local_build_options(
    settings: Settings, engine: str, template: dict[str, Any], notify: Progress = lambda _: None
) -> BuildOptions:
    """Build options for ``engine``; on the embedded engine, the template's runtimes are prepared first.

    The embedded engine runs each function on its runtime's interpreter where one is installed
    (else on its own, with a line saying so), so wheels are chosen for that interpreter; the
    engine image runs every Python function on its Python; LocalStack runs real Lambda runtimes.
    """
    if engine == "localstack":
        return BuildOptions(None, machine_architecture())
    if engine != "embedded":
        return BuildOptions(lambda _runtime: CONTAINER_ENGINE_PYTHON, machine_architecture())
    runtimes = prepare_runtimes(
        set(function_runtimes(template).values()), settings.cache_dir / RUNTIMES_FOLDER, notify
    )

    def python_version_for(runtime: str) -> str:
        prepared = runtimes.get(runtime)
        return prepared.version if prepared else runtime.removeprefix("python")

    return BuildOptions(python_version_for, machine_architecture())


def package_local(
    settings: Settings,
    bucket: str,
    upload: Callable[[str, bytes], None],
    engine: str = "embedded",
    notify: Progress = lambda _: None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The template (``source``, else read) built as `sam build` builds it, for the engine that runs it."""
    source = source if source is not None else load_template(settings.template_path)
    options = local_build_options(settings, engine, source, notify)
    return package_template(
        source, settings.template_path.parent, bucket, upload, cache_dir=settings.cache_dir,
        python_version_for=options.python_version_for, architecture=options.architecture, notify=notify,
    )  # fmt: skip


@dataclass(frozen=True)
class PackagedStack:
    """The packaged template and the artifacts (S3 key -> bytes) it names."""

    template: dict[str, Any]
    artifacts: dict[str, bytes]
    parameters: dict[str, str]


def package_artifacts(
    settings: Settings,
    source: dict[str, Any],
    parameters: dict[str, str],
    engine: str,
    notify: Progress = lambda _: None,
) -> PackagedStack:
    """Package ``source`` without an engine: the artifacts are uploaded once one is there.

    ``parameters`` come from ``project_parameters``, called first so that a wrong one is refused
    before anything is built or started.
    """
    artifacts: dict[str, bytes] = {}
    template = package_local(
        settings, artifact_bucket(settings.stack_name), artifacts.__setitem__, engine, notify, source
    )
    return PackagedStack(template, artifacts, parameters)


def _no_upload(_key: str, _content: bytes) -> None:
    """Packaging without uploading: synth shows the template, nothing leaves the machine."""


@dataclass(frozen=True)
class StackOptions:
    """The choices a deploy makes that the template exposes as parameters."""

    is_api_open: bool = False


class Target(Protocol):
    """A place a stack is deployed to."""

    @property
    def stack_name(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def poll_seconds(self) -> float: ...
    def client(self, service: str) -> Any: ...
    def artifact_store(self, progress: Progress) -> tuple[str, Upload]: ...
    def package(self, bucket: str, upload: Upload, progress: Progress) -> dict[str, Any]: ...
    def parameters(self, options: StackOptions, template: dict[str, Any]) -> dict[str, str]: ...
    def tags(self) -> dict[str, str]: ...
    def capabilities(self) -> list[str] | None: ...
    def api_url(self, outputs: dict[str, str]) -> str | None: ...
    def settle(self, outputs: dict[str, str], progress: Progress) -> int:
        """After a deploy: remember the outputs (and seed the demo's inventory); the products added."""
        ...

    def environment(self, outputs: dict[str, str]) -> dict[str, str]:
        """What another tool (the AWS CLI, a script) needs to reach this stack: region, endpoint, names."""
        ...


@dataclass(frozen=True)
class LocalTarget:
    """The stack on a running local engine (embedded or in a container)."""

    settings: Settings
    endpoint_url: str
    engine_kind: str = "embedded"
    on_deployed: Callable[[dict[str, str]], None] = lambda _outputs: None
    parameter_values: dict[str, str] | None = None  # None: the project's (samconfig, overrides)
    prepackaged: PackagedStack | None = None  # packaged ahead (while the engine started)

    @property
    def stack_name(self) -> str:
        return self.settings.stack_name

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def poll_seconds(self) -> float:
        return LOCAL_POLL_SECONDS

    def client(self, service: str) -> Any:
        return make_client(service, endpoint_url=self.endpoint_url, region=self.region)

    def artifact_store(self, progress: Progress) -> tuple[str, Upload]:
        s3: S3Client = self.client("s3")
        bucket = artifact_bucket(self.stack_name)
        ensure_artifact_bucket(s3, bucket, self.region)
        return bucket, make_uploader(s3, bucket)

    def package(self, bucket: str, upload: Upload, progress: Progress) -> dict[str, Any]:
        if self.prepackaged is None:
            progress("building functions and layers")
            return package_local(self.settings, bucket, upload, self.engine_kind, progress)
        for key, content in self.prepackaged.artifacts.items():
            upload(key, content)
        return self.prepackaged.template

    def parameters(self, options: StackOptions, template: dict[str, Any]) -> dict[str, str]:
        if self.parameter_values is not None:
            return self.parameter_values
        if self.prepackaged is not None:
            return self.prepackaged.parameters
        return project_parameters(self.settings, template)

    def tags(self) -> dict[str, str]:
        return project_tags(self.settings)

    def capabilities(self) -> list[str] | None:
        return None  # a local engine checks none: every capability is granted

    def api_url(self, outputs: dict[str, str]) -> str | None:
        return local_api_url(self.endpoint_url, outputs["ApiId"]) if "ApiId" in outputs else None

    def settle(self, outputs: dict[str, str], progress: Progress) -> int:
        self.on_deployed(outputs)
        if not self.settings.is_demo:
            return 0
        progress("seeding the demo inventory")
        return seed_inventory(self.client("dynamodb"), outputs["InventoryTableName"])

    def environment(self, outputs: dict[str, str]) -> dict[str, str]:
        # The standard AWS_ENDPOINT_URL (AWS CLI v2, boto3 1.28+) and the engine's dummy keys.
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region, "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_KEY,
                **stack_variables(local_outputs(outputs, self.endpoint_url), self.api_url(outputs))}  # fmt: skip


@dataclass(frozen=True)
class AwsAccount:
    """The stack of a stage in an AWS account (or an AWS-compatible endpoint)."""

    settings: Settings
    aws: AwsSession

    @property
    def stack_name(self) -> str:
        return self.aws.target.stack_name

    @property
    def region(self) -> str:
        return self.aws.region

    @property
    def poll_seconds(self) -> float:
        return self.aws.target.poll_seconds

    def client(self, service: str) -> Any:
        return self.aws.client(service)

    def artifact_store(self, progress: Progress) -> tuple[str, Upload]:
        return prepare_artifacts(self.aws, progress)

    def package(self, bucket: str, upload: Upload, progress: Progress) -> dict[str, Any]:
        return package_for_aws(self.settings, bucket, upload, progress)

    def parameters(self, options: StackOptions, template: dict[str, Any]) -> dict[str, str]:
        values = project_parameters(self.settings, template, is_local=False)
        if not self.settings.is_demo:
            return values
        # The demo's own switches, as its deploy flags set them.
        return {**values, **aws_parameters(is_api_open=options.is_api_open)}

    def tags(self) -> dict[str, str]:
        return project_tags(self.settings, is_local=False)

    def capabilities(self) -> list[str] | None:
        return self.settings.samconfig(is_local=False).capabilities or None  # samconfig's, as sam deploy

    def api_url(self, outputs: dict[str, str]) -> str | None:
        return api_url(self.aws.target, outputs) if "ApiId" in outputs else None

    def settle(self, outputs: dict[str, str], progress: Progress) -> int:
        if not self.settings.is_demo:
            return 0
        seeded = seed_aws_inventory(self.aws, outputs)
        progress(f"added {seeded} demo products to the inventory table (existing stock untouched)")
        return seeded

    def environment(self, outputs: dict[str, str]) -> dict[str, str]:
        # The user's own credentials and profile stay as they are; an offline endpoint is named.
        endpoint = {"AWS_ENDPOINT_URL": self.aws.target.endpoint_url} if self.aws.target.endpoint_url else {}
        return {**endpoint, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
                **stack_variables(outputs, self.api_url(outputs))}  # fmt: skip

    @property
    def artifact_bucket(self) -> str:
        return self.aws.target.artifact_bucket or artifact_bucket_name(self.aws.account_id(), self.region)


def stack_variables(outputs: dict[str, str], api_url: str | None) -> dict[str, str]:
    """The stack's outputs as SANDBOX_* variables: OrdersTableName -> SANDBOX_ORDERS_TABLE, ...

    ``SANDBOX_API_URL`` is the URL that answers from here (locally not the AWS-style ``ApiUrl``).
    """
    variables = {"SANDBOX_API_URL": api_url} if api_url else {}
    for name, value in outputs.items():
        words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper().removesuffix("_NAME")
        variables.setdefault(f"SANDBOX_{words}", value)
    return variables


def aws_account(settings: Settings, target: AwsTarget) -> AwsAccount:
    """The AWS account of the user's credentials, checked (AWS accepted them) before any change."""
    aws = AwsSession(target)
    aws.account_id()
    return AwsAccount(settings, aws)


@dataclass(frozen=True)
class Synthesis:
    """The packaged template exactly as it would be deployed, and its parameters."""

    template: dict[str, Any]
    parameters: dict[str, str]


def synth(
    target: Target, bucket: str, options: StackOptions, progress: Progress = lambda _: None
) -> Synthesis:
    """Package the template for ``target`` into ``bucket``'s keys, uploading nothing."""
    template = target.package(bucket, _no_upload, progress)
    return Synthesis(template, target.parameters(options, template))


class DeployCancelled(Exception):
    """Nobody confirmed the change set; it was deleted and nothing was deployed."""


@dataclass(frozen=True)
class Deployment:
    """A finished deploy: the stack's result, its API URL and the changes that were applied."""

    result: DeployResult
    api_url: str | None
    plan: ChangeSetPlan | None
    seeded_products: int = 0

    @property
    def outputs(self) -> dict[str, str]:
        return self.result.outputs

    def to_json(self) -> dict[str, Any]:
        changes = [change.__dict__ for change in self.plan.changes] if self.plan else []
        result = self.result
        return {"stack": result.stack_name, "isChanged": result.is_changed, "status": result.status,
                "apiUrl": self.api_url, "changes": changes, "outputs": result.outputs}  # fmt: skip


def plan_deploy(
    target: Target, options: StackOptions = StackOptions(), progress: Progress = lambda _: None
) -> ChangeSetPlan | None:
    """Package, upload and create a change set; None when the stack is already as the template says."""
    bucket, upload = target.artifact_store(progress)
    template = target.package(bucket, upload, progress)
    cfn: CloudFormationClient = target.client("cloudformation")
    progress(f"creating a change set for {target.stack_name} in {target.region}")
    return plan_change_set(
        cfn, target.stack_name, template, target.parameters(options, template),
        poll_seconds=target.poll_seconds, tags=target.tags(), capabilities=target.capabilities(),
    )  # fmt: skip


def deploy(
    target: Target,
    options: StackOptions = StackOptions(),
    *,
    confirm: Callable[[ChangeSetPlan], bool] = lambda _plan: True,
    on_event: Callable[[dict[str, Any]], None] = lambda _event: None,
    progress: Progress = lambda _: None,
) -> Deployment:
    """Package, upload, plan a change set, let ``confirm`` see it, execute it, settle the stack.

    A stack that is already as the template says is not changed (and ``confirm`` is not asked).
    Raises ``DeployCancelled`` when ``confirm`` says no, after deleting the change set.
    """
    plan = plan_deploy(target, options, progress)
    cfn: CloudFormationClient = target.client("cloudformation")
    if plan is None:
        result = DeployResult(
            target.stack_name,
            False,
            str(stack_status(cfn, target.stack_name)),
            read_outputs(cfn, target.stack_name),
        )
    elif not confirm(plan):
        discard_plan(cfn, plan)
        raise DeployCancelled(f"the change set for {target.stack_name} was deleted and nothing was deployed")
    else:
        result = execute_plan(cfn, plan, on_event=on_event, poll_seconds=target.poll_seconds)
    seeded = target.settle(result.outputs, progress)
    return Deployment(result, target.api_url(result.outputs), plan, seeded)


def change_set_arn(target: Target, plan: ChangeSetPlan) -> str:
    """The ARN of a change set left for review."""
    cfn: CloudFormationClient = target.client("cloudformation")
    return str(
        cfn.describe_change_set(StackName=plan.stack_name, ChangeSetName=plan.name).get("ChangeSetId", "")
    )


def execute_change_set(
    target: Target,
    name: str,
    *,
    on_event: Callable[[dict[str, Any]], None] = lambda _event: None,
    progress: Progress = lambda _: None,
) -> Deployment:
    """Execute a change set created earlier (`--no-execute-changeset`) and settle the stack."""
    cfn: CloudFormationClient = target.client("cloudformation")
    try:
        change_set = cfn.describe_change_set(StackName=target.stack_name, ChangeSetName=name)
    except ClientError as error:
        raise DeployError(
            f"no change set {name} on stack {target.stack_name}: {error.response['Error'].get('Message', error)}",
            hint="`sandbox deploy --no-execute-changeset` prints the name of the one it leaves",
        ) from error
    if change_set.get("ExecutionStatus") != "AVAILABLE":
        raise DeployError(
            f"change set {name} cannot be executed: {change_set.get('ExecutionStatus')} "
            f"({change_set.get('StatusReason') or change_set.get('Status')})"
        )
    kind = "CREATE" if stack_status(cfn, target.stack_name) == "REVIEW_IN_PROGRESS" else "UPDATE"
    plan = ChangeSetPlan(target.stack_name, name, kind, read_changes(cfn, target.stack_name, name))
    progress(f"executing change set {name}")
    result = execute_plan(cfn, plan, on_event=on_event, poll_seconds=target.poll_seconds)
    seeded = target.settle(result.outputs, progress)
    return Deployment(result, target.api_url(result.outputs), plan, seeded)


# Left behind on purpose by a destroy: the tables with the orders, payments and stock.
RETAINED_OUTPUTS = (
    "OrdersTableName",
    "InventoryTableName",
    "ReservationsTableName",
    "PaymentsTableName",
    "ShipmentsTableName",
)


@dataclass(frozen=True)
class Destruction:
    """What destroying a stack did, and what it left behind on purpose."""

    stack_name: str
    is_deleted: bool
    retained_tables: dict[str, str]
    artifact_bucket: str | None

    def to_json(self) -> dict[str, Any]:
        if not self.is_deleted:
            return {"stack": self.stack_name, "deleted": False}
        return {"stack": self.stack_name, "deleted": True, "retainedTables": self.retained_tables,
                "artifactBucket": self.artifact_bucket}  # fmt: skip


def destroy(
    account: AwsAccount,
    *,
    confirm: Callable[[], bool] = lambda: True,
    on_event: Callable[[dict[str, Any]], None] = lambda _event: None,
) -> Destruction:
    """Delete the AWS stack once ``confirm`` agrees; a missing stack is not an error.

    Raises ``DeployCancelled`` when ``confirm`` says no (nothing was deleted).
    """
    cfn: CloudFormationClient = account.client("cloudformation")
    if stack_status(cfn, account.stack_name) is None:
        return Destruction(account.stack_name, False, {}, None)
    outputs = read_outputs(cfn, account.stack_name)
    if not confirm():
        raise DeployCancelled("nothing was deleted")
    delete_stack(cfn, account.stack_name, on_event=on_event, poll_seconds=account.poll_seconds)
    retained = {key: outputs[key] for key in RETAINED_OUTPUTS if key in outputs}
    return Destruction(account.stack_name, True, retained, account.artifact_bucket)
