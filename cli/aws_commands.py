"""`sandbox synth`, `sandbox deploy` and `sandbox destroy`: the same template, locally or on AWS."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import (
    EndpointOption,
    JsonFlag,
    ProfileOption,
    RegionOption,
    StageOption,
    Target,
    YesFlag,
    project_command,
)
from cli.output import console, error_console, print_json, print_key_values, styled
from sandbox.errors import UsageError

# Packaging, deploying and boto3 load in the command that does them, not with the CLI.
if TYPE_CHECKING:
    from sandbox import targets
    from sandbox.deploy import ChangeSetPlan


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


def _confirm(question: str, is_yes: bool) -> bool:
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
) -> None:
    """Print the packaged template exactly as it would be deployed (artifacts are not uploaded)."""
    from sandbox import targets
    from sandbox.aws import AwsSession, AwsTarget
    from sandbox.settings import Settings
    from sandbox.targets import AwsAccount, LocalTarget, StackOptions, artifact_bucket

    settings = Settings.load()
    options = StackOptions()
    if target is Target.local:
        local = LocalTarget(settings, settings.endpoint_url)
        synthesis = targets.synth(local, artifact_bucket(settings.stack_name), options)
    else:
        aws_target = AwsTarget.load(
            settings, stage=stage, region=region, profile=profile, endpoint_url=endpoint_url,
            artifact_bucket=artifact_bucket_option,
        )  # fmt: skip
        account = AwsAccount(settings, AwsSession(aws_target))
        synthesis = targets.synth(account, account.artifact_bucket, options, _progress(is_quiet=False))
    text = json.dumps(synthesis.template, indent=2) + "\n"
    error_console.print(
        "[dim]rendered for parameters: "
        + " ".join(f"{k}={v}" for k, v in synthesis.parameters.items())
        + "[/dim]"
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
    open_api: Annotated[
        bool, typer.Option("--open-api", help="Opt out of IAM auth: anyone with the URL may call the API.")
    ] = False,
    endpoint_url: EndpointOption = None,
    no_execute_changeset: Annotated[
        bool,
        typer.Option(
            "--no-execute-changeset",
            help="Create the change set and leave it for review (name and ARN printed).",
        ),
    ] = False,
    execute_changeset: Annotated[
        str | None,
        typer.Option(
            "--execute-changeset", metavar="NAME", help="Execute a change set left for review earlier."
        ),
    ] = None,
    guided: Annotated[
        bool,
        typer.Option(
            "--guided", help="Ask for the stack name, region and parameters, and save them to samconfig.toml."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Package, upload and deploy the template by change set: to the local engine or to AWS."""
    if no_execute_changeset and execute_changeset:
        raise UsageError("--no-execute-changeset and --execute-changeset exclude each other")
    from sandbox import targets
    from sandbox.aws import AwsTarget
    from sandbox.engine import running_engine
    from sandbox.settings import Settings
    from sandbox.stack import remember_outputs
    from sandbox.targets import DeployCancelled, LocalTarget, StackOptions, aws_account

    if guided:
        from cli.guided import run_guided  # asks on the terminal; writes samconfig.toml

        run_guided(Settings.load(), is_local=target is Target.local)
    settings = Settings.load()
    progress = _progress(json_output)
    where: targets.Target
    if target is Target.local:
        engine = running_engine(settings)
        where = LocalTarget(settings, engine.endpoint_url, engine.engine,
                            lambda outputs: remember_outputs(settings, engine, outputs))  # fmt: skip
    else:
        if not no_execute_changeset:
            _require_someone_to_confirm(yes)
        where = aws_account(settings, AwsTarget.load(
            settings, stage=stage, region=region, profile=profile, endpoint_url=endpoint_url,
            artifact_bucket=artifact_bucket_option,
        ))  # fmt: skip

    def confirm(plan: ChangeSetPlan) -> bool:
        if not json_output:
            _print_change_set(plan)
        return target is Target.local or _confirm(
            f"Deploy these {len(plan.changes)} changes to {where.region}?", yes
        )

    on_event = (lambda _: None) if json_output else _print_event
    if no_execute_changeset:
        plan = targets.plan_deploy(where, StackOptions(is_api_open=open_api), progress)
        _leave_change_set(where, plan, target, json_output)
        return
    try:
        if execute_changeset:
            deployment = targets.execute_change_set(
                where, execute_changeset, on_event=on_event, progress=progress
            )
        else:
            deployment = targets.deploy(
                where, StackOptions(is_api_open=open_api), confirm=confirm, on_event=on_event,
                progress=progress,
            )  # fmt: skip
    except DeployCancelled:
        error_console.print("cancelled; the change set was deleted and nothing was deployed")
        raise typer.Exit(code=1) from None
    if json_output:
        print_json(deployment.to_json())
        return
    result = deployment.result
    verdict = "deployed" if result.is_changed else "unchanged: no changes to deploy"
    console.print(f"[green]✓[/green] stack {result.stack_name} {verdict} ({result.status})")
    api = {"API": deployment.api_url} if deployment.api_url else {}
    print_key_values({**api, **dict(sorted(result.outputs.items()))})


def _print_change_set(plan: ChangeSetPlan) -> None:
    from rich.table import Table

    table = Table("action", "resource", "type", "replacement", title=f"change set for {plan.stack_name}")
    for change in plan.changes:
        table.add_row(change.action, change.logical_id, change.resource_type, change.replacement)
    console.print(table)


def _leave_change_set(
    where: targets.Target, plan: ChangeSetPlan | None, target: Target, json_output: bool
) -> None:
    """Print the change set left for review, and how to execute it."""
    from sandbox import targets

    if plan is None:
        if json_output:
            print_json({"stack": where.stack_name, "changeSet": None, "changes": []})
        else:
            console.print(f"stack {where.stack_name} is already as the template says: no change set left")
        return
    arn = targets.change_set_arn(where, plan)
    if json_output:
        print_json({"stack": plan.stack_name, "changeSet": plan.name, "changeSetArn": arn,
                    "changes": [change.__dict__ for change in plan.changes]})  # fmt: skip
        return
    _print_change_set(plan)
    console.print(f"change set {plan.name} left for review; the stack is unchanged\n  {arn}")
    console.print(
        f"[dim]execute it: sandbox deploy --target {target.value} --execute-changeset {plan.name}[/dim]"
    )


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
    from sandbox import targets
    from sandbox.aws import AwsTarget
    from sandbox.settings import Settings
    from sandbox.targets import DeployCancelled, aws_account

    settings = Settings.load()
    account = aws_account(
        settings,
        AwsTarget.load(settings, stage=stage, region=region, profile=profile, endpoint_url=endpoint_url),
    )
    try:
        destruction = targets.destroy(
            account,
            confirm=lambda: _confirm(f"Delete stack {account.stack_name} in {account.region}?", yes),
            on_event=(lambda _: None) if json_output else _print_event,
        )
    except DeployCancelled:
        error_console.print("cancelled; nothing was deleted")
        raise typer.Exit(code=1) from None
    if json_output:
        print_json(destruction.to_json())
        return
    if not destruction.is_deleted:
        console.print(f"stack {account.stack_name} does not exist in {account.region}; nothing to destroy")
        return
    console.print(f"[green]✓[/green] deleted stack {account.stack_name}")
    console.print("left behind on purpose (delete them yourself when you are sure):")
    console.print(
        f"  artifact bucket  s3://{destruction.artifact_bucket}  (versioned; shared by every stage in {account.region})"
    )
    for key, name in destruction.retained_tables.items():
        console.print(
            f"  table            {name}  ({key.removesuffix('TableName').lower()}, retained with PITR)"
        )


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox synth    sandbox synth --target aws --artifact-bucket my-bucket --output packaged.json"
    )(project_command(deploys=True)(synth))
    app.command(epilog="Examples:  sandbox deploy --target aws --stage dev    sandbox deploy --target local")(
        project_command(deploys=True)(deploy)
    )
    app.command(epilog="Example:  sandbox destroy --target aws --stage dev")(project_command()(destroy))
