"""`sandbox synth`, `sandbox deploy` and `sandbox destroy`: the same template, locally or on AWS."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.output import console, error_console, print_json, print_key_values, styled
from sandbox.aws import (
    AwsSession,
    AwsTarget,
    api_url,
    artifact_bucket_name,
    aws_parameters,
    package_for_aws,
    prepare_artifacts,
    seed_aws_inventory,
)
from sandbox.deploy import (
    DeployResult,
    delete_stack,
    discard_plan,
    execute_plan,
    plan_change_set,
    read_outputs,
    stack_status,
)
from sandbox.engines import running_engine
from sandbox.errors import UsageError
from sandbox.settings import Settings
from sandbox.stack import LOCAL_PARAMETERS, artifact_bucket, deploy_local, local_api_url, package_local

RETAINED_OUTPUTS = (
    "OrdersTableName",
    "InventoryTableName",
    "ReservationsTableName",
    "PaymentsTableName",
    "ShipmentsTableName",
)


class Target(StrEnum):
    local = "local"
    aws = "aws"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
StageOption = Annotated[
    str | None, typer.Option(help="Stage: the AWS stack is saga-sandbox-STAGE.", show_default="dev")
]
RegionOption = Annotated[str | None, typer.Option(help="AWS region (default: your AWS configuration).")]
ProfileOption = Annotated[str | None, typer.Option(help="AWS profile (default: your AWS configuration).")]
EndpointOption = Annotated[
    str | None,
    typer.Option(help="Point the AWS path at an AWS-compatible endpoint (env SANDBOX_AWS_ENDPOINT_URL)."),
]
BucketOption = Annotated[
    str | None, typer.Option(help="Artifact bucket (default: saga-sandbox-artifacts-ACCOUNT-REGION).")
]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _progress(is_quiet: bool) -> Any:
    return lambda text: None if is_quiet else error_console.print(f"[dim]{text}…[/dim]")


def _print_event(event: dict[str, Any]) -> None:
    reason = event.get("ResourceStatusReason") or ""
    console.print(
        f"  {event['Timestamp']:%H:%M:%S}  {styled(event['ResourceStatus'])}  "
        f"{event['LogicalResourceId']} [dim]{event.get('ResourceType', '')} {reason}[/dim]",
        soft_wrap=True,
        highlight=False,
    )


def _require_someone_to_confirm(is_yes: bool) -> None:
    """Fail before any work, and any AWS call, when a confirmation will be needed and nobody can give it."""
    if not is_yes and not sys.stdin.isatty():
        raise UsageError("this would change AWS resources and no one is here to confirm", hint="pass --yes")


def _open_checked_session(target: AwsTarget) -> AwsSession:
    """The user's AWS session, its credentials resolved and accepted by AWS before any change."""
    aws = AwsSession(target)
    aws.account_id()
    return aws


def _confirm(question: str, is_yes: bool) -> bool:
    _require_someone_to_confirm(is_yes)
    return is_yes or typer.confirm(question, default=False)


def synth(
    target: Annotated[Target, typer.Option(help="Which packaging to render.")] = Target.local,
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    artifact_bucket_option: Annotated[
        str | None, typer.Option("--artifact-bucket", help="Artifact bucket (aws; default from the account).")
    ] = None,
    endpoint_url: EndpointOption = None,
    enable_fault_injection: Annotated[
        bool, typer.Option(help="aws: render with fault injection on.")
    ] = False,
) -> None:
    """Print the packaged template exactly as it would be deployed (artifacts are not uploaded)."""
    settings = Settings.load()
    progress = _progress(is_quiet=False)
    if target is Target.local:
        template = package_local(settings, artifact_bucket(settings.stack_name), lambda _key, _content: None)
        parameters = LOCAL_PARAMETERS
    else:
        aws_target = AwsTarget.load(
            stage=stage, region=region, profile=profile, endpoint_url=endpoint_url,
            artifact_bucket=artifact_bucket_option,
        )  # fmt: skip
        bucket = aws_target.artifact_bucket
        if bucket is None:
            aws = AwsSession(aws_target)
            bucket = artifact_bucket_name(aws.account_id(), aws.region)
        template = package_for_aws(settings, bucket, lambda _key, _content: None, progress)
        parameters = aws_parameters(is_fault_injection_enabled=enable_fault_injection, is_api_open=False)
    text = json.dumps(template, indent=2) + "\n"
    error_console.print(
        "[dim]deployed with parameters: " + " ".join(f"{k}={v}" for k, v in parameters.items()) + "[/dim]"
    )
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        error_console.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def deploy(
    target: Annotated[Target, typer.Option(help="Where to deploy: the running local engine, or AWS.")],
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    artifact_bucket_option: Annotated[
        str | None,
        typer.Option(
            "--artifact-bucket", help="Artifact bucket (default: saga-sandbox-artifacts-ACCOUNT-REGION)."
        ),
    ] = None,
    yes: YesFlag = False,
    enable_fault_injection: Annotated[
        bool, typer.Option(help="Let orders carry faults on AWS (off by default).")
    ] = False,
    open_api: Annotated[
        bool, typer.Option("--open-api", help="Opt out of IAM auth: anyone with the URL may call the API.")
    ] = False,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Package, upload and deploy the template by change set: to the local engine or to AWS."""
    settings = Settings.load()
    progress = _progress(json_output)
    if target is Target.local:
        engine = running_engine(settings)
        result = deploy_local(settings, engine, progress)
        _report(result, local_api_url(engine.endpoint_url, result.outputs["ApiId"]), [], json_output)
        return
    _require_someone_to_confirm(yes)
    aws_target = AwsTarget.load(
        stage=stage,
        region=region,
        profile=profile,
        endpoint_url=endpoint_url,
        artifact_bucket=artifact_bucket_option,
    )
    aws = _open_checked_session(aws_target)
    bucket, upload = prepare_artifacts(aws, progress)
    template = package_for_aws(settings, bucket, upload, progress)
    parameters = aws_parameters(is_fault_injection_enabled=enable_fault_injection, is_api_open=open_api)
    cfn = aws.client("cloudformation")
    progress(f"creating a change set for {aws_target.stack_name} in {aws.region}")
    plan = plan_change_set(
        cfn, aws_target.stack_name, template, parameters, poll_seconds=aws_target.poll_seconds
    )
    if plan is None:
        outputs = read_outputs(cfn, aws_target.stack_name)
        result = DeployResult(
            aws_target.stack_name, False, str(stack_status(cfn, aws_target.stack_name)), outputs
        )
        _seed(aws, outputs, progress)
        _report(result, api_url(aws_target, outputs), [], json_output)
        return
    changes = [change.__dict__ for change in plan.changes]
    if not json_output:
        table = Table("action", "resource", "type", "replacement", title=f"change set for {plan.stack_name}")
        for change in plan.changes:
            table.add_row(change.action, change.logical_id, change.resource_type, change.replacement)
        console.print(table)
    if not _confirm(f"Deploy these {len(plan.changes)} changes to {aws.region}?", yes):
        discard_plan(cfn, plan)
        error_console.print("cancelled; the change set was deleted and nothing was deployed")
        raise typer.Exit(code=1)
    result = execute_plan(
        cfn,
        plan,
        on_event=(lambda _: None) if json_output else _print_event,
        poll_seconds=aws_target.poll_seconds,
    )
    _seed(aws, result.outputs, progress)
    _report(result, api_url(aws_target, result.outputs), changes, json_output)


def _seed(aws: AwsSession, outputs: dict[str, str], progress: Any) -> None:
    seeded = seed_aws_inventory(aws, outputs)
    progress(f"added {seeded} demo products to the inventory table (existing stock untouched)")


def _report(result: DeployResult, url: str, changes: list[dict[str, Any]], json_output: bool) -> None:
    if json_output:
        print_json({"stack": result.stack_name, "isChanged": result.is_changed, "status": result.status,
                    "apiUrl": url, "changes": changes, "outputs": result.outputs})  # fmt: skip
        return
    verdict = "deployed" if result.is_changed else "unchanged: no changes to deploy"
    console.print(f"[green]✓[/green] stack {result.stack_name} {verdict} ({result.status})")
    print_key_values({"API": url, **dict(sorted(result.outputs.items()))})


def destroy(
    target: Annotated[Target, typer.Option(help="Only aws: a local stack goes away with `sandbox down`.")],
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    yes: YesFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Delete the AWS stack, and say what it leaves behind."""
    if target is Target.local:
        raise UsageError("a local stack lives and dies with its engine", hint="run `sandbox down`")
    _require_someone_to_confirm(yes)
    aws_target = AwsTarget.load(stage=stage, region=region, profile=profile, endpoint_url=endpoint_url)
    aws = _open_checked_session(aws_target)
    cfn = aws.client("cloudformation")
    if stack_status(cfn, aws_target.stack_name) is None:
        if json_output:
            print_json({"stack": aws_target.stack_name, "deleted": False})
        else:
            console.print(f"stack {aws_target.stack_name} does not exist in {aws.region}; nothing to destroy")
        return
    outputs = read_outputs(cfn, aws_target.stack_name)
    if not _confirm(f"Delete stack {aws_target.stack_name} in {aws.region}?", yes):
        error_console.print("cancelled; nothing was deleted")
        raise typer.Exit(code=1)
    delete_stack(
        cfn, aws_target.stack_name, on_event=(lambda _: None) if json_output else _print_event,
        poll_seconds=aws_target.poll_seconds,
    )  # fmt: skip
    retained = {key: outputs[key] for key in RETAINED_OUTPUTS if key in outputs}
    bucket = aws_target.artifact_bucket or artifact_bucket_name(aws.account_id(), aws.region)
    if json_output:
        print_json({"stack": aws_target.stack_name, "deleted": True, "retainedTables": retained,
                    "artifactBucket": bucket})  # fmt: skip
        return
    console.print(f"[green]✓[/green] deleted stack {aws_target.stack_name}")
    console.print("left behind on purpose (delete them yourself when you are sure):")
    console.print(f"  artifact bucket  s3://{bucket}  (versioned; shared by every stage in {aws.region})")
    for key, name in retained.items():
        console.print(
            f"  table            {name}  ({key.removesuffix('TableName').lower()}, retained with PITR)"
        )


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox synth    sandbox synth --target aws --artifact-bucket my-bucket --output packaged.json"
    )(synth)
    app.command(epilog="Examples:  sandbox deploy --target aws --stage dev    sandbox deploy --target local")(
        deploy
    )
    app.command(epilog="Example:  sandbox destroy --target aws --stage dev")(destroy)
