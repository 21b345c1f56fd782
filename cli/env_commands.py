"""`sandbox env`: the environment another tool needs to reach the stack (`eval "$(sandbox env)"`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from cli.options import (
    EndpointOption,
    JsonFlag,
    ProfileOption,
    RegionOption,
    StageOption,
    Target,
    project_command,
)
from cli.output import print_json


class Shell(StrEnum):
    bash = "bash"  # also zsh and sh
    fish = "fish"
    powershell = "powershell"


def _quote(value: str, shell: Shell) -> str:
    """The value in single quotes, with what the shell treats specially inside them escaped."""
    if shell is Shell.bash:
        return "'" + value.replace("'", "'\\''") + "'"
    if shell is Shell.fish:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + value.replace("'", "''") + "'"


def render(variables: dict[str, str], shell: Shell) -> str:
    """One assignment per line, in the shell's own syntax, values quoted for it."""
    forms = {Shell.bash: "export {}={}", Shell.fish: "set -gx {} {}", Shell.powershell: "$env:{} = {}"}
    return "".join(
        forms[shell].format(name, _quote(value, shell)) + "\n" for name, value in variables.items()
    )


def env(
    target: Annotated[
        Target, typer.Option(help="The local engine's stack, or the AWS stack.")
    ] = Target.local,
    shell: Annotated[Shell, typer.Option(help="The syntax to print.")] = Shell.bash,
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Print AWS_ENDPOINT_URL, the region, local dummy keys and the stack's names as SANDBOX_* variables."""
    from sandbox.settings import Settings
    from sandbox.stack import find_stack
    from sandbox.targets import LocalTarget, aws_account

    settings = Settings.load()
    if target is Target.local:
        stack = find_stack(settings)
        variables = LocalTarget(settings, stack.engine.endpoint_url, stack.engine.engine).environment(
            stack.outputs
        )
    else:
        from sandbox.aws import AwsTarget
        from sandbox.deploy import read_outputs

        account = aws_account(settings, AwsTarget.load(settings, stage=stage, region=region, profile=profile,
                                                        endpoint_url=endpoint_url))  # fmt: skip
        variables = account.environment(read_outputs(account.client("cloudformation"), account.stack_name))
    if json_output:
        print_json(variables)
    else:
        typer.echo(render(variables, shell), nl=False)


def register(app: typer.Typer) -> None:
    """Add this command to the CLI."""
    app.command(
        epilog='Examples:  eval "$(sandbox env)"    sandbox env --shell fish | source    sandbox env --json'
    )(project_command()(env))
