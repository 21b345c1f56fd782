"""Options every command spells the same way: one definition each."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer


class Target(StrEnum):
    local = "local"
    aws = "aws"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
StateMachineArgument = Annotated[
    str | None,
    typer.Argument(
        help="The state machine: its logical id, name or ARN (default: the stack's only one).",
        show_default=False,
    ),
]
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
TargetOption = Annotated[Target, typer.Option(help="The local engine's stack, or the AWS stack.")]


# Shell completion (`sandbox --install-completion`): cheap answers only; a slow or failing lookup
# completes nothing rather than holding up the shell.
def complete_step(incomplete: str) -> list[str]:
    from sandbox.orders import SAGA_STEPS

    return [step for step in SAGA_STEPS if step.startswith(incomplete)]


def complete_engine(incomplete: str) -> list[str]:
    from sandbox.settings import ENGINES

    return [engine for engine in ENGINES if engine.startswith(incomplete)]


def complete_order_id(incomplete: str) -> list[str]:
    """The newest order ids of the local stack, when its engine answers."""
    from sandbox.orders import OrdersClient
    from sandbox.settings import Settings
    from sandbox.stack import find_stack

    try:
        orders = OrdersClient(find_stack(Settings.load()).api_url).list_orders(limit=20)
    except Exception:  # no engine, no stack: nothing to offer
        return []
    return [order["orderId"] for order in orders if order["orderId"].startswith(incomplete)]


# The project a command acts on, spelled as the SAM CLI spells it. `project_command` adds these
# to a command; every Settings.load during that command then sees them.
TemplateOption = Annotated[
    Path | None,
    typer.Option(
        "--template-file",
        "-t",
        help="Your SAM template (default: template.yaml in this folder, else the bundled demo; "
        "env SANDBOX_TEMPLATE_FILE).",
        show_default=False,
    ),
]
StackNameOption = Annotated[
    str | None,
    typer.Option(
        "--stack-name",
        help="The stack's name (default: samconfig's stack_name, else the project folder's name).",
    ),
]
ConfigEnvOption = Annotated[
    str | None,
    typer.Option(
        "--config-env",
        help="The samconfig environment (default: local when the file has it, else default).",
    ),
]
ConfigFileOption = Annotated[
    Path | None,
    typer.Option("--config-file", help="The samconfig file (default: samconfig.toml beside the template)."),
]
ParameterOverridesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--parameter-overrides",
        help="Template parameters as Name=Value pairs (quote values with spaces); merged over samconfig's.",
        show_default=False,
    ),
]
TagsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tags", help="Stack tags as Key=Value pairs; merged over samconfig's.", show_default=False
    ),
]

_PROJECT_PARAMETERS = {
    "template_file": TemplateOption,
    "stack_name": StackNameOption,
    "config_env": ConfigEnvOption,
    "config_file": ConfigFileOption,
}
_DEPLOY_PARAMETERS = {"parameter_overrides": ParameterOverridesOption, "tags": TagsOption}
F = TypeVar("F", bound=Callable[..., Any])


def project_command(*, deploys: bool = False) -> Callable[[F], F]:
    """Give a command the project options (and, when it ``deploys``, parameter overrides and tags).

    The options are appended to the command's own; the command's body reads them through
    ``Settings.load`` like every other setting.
    """
    added = {**_PROJECT_PARAMETERS, **(_DEPLOY_PARAMETERS if deploys else {})}

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)  # the command's module says what names mean
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
            for name, annotation in added.items()
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            from sandbox.samconfig import parse_key_values
            from sandbox.settings import flags_of_command

            flags = {name: kwargs.pop(name, None) for name in added}
            for name in _DEPLOY_PARAMETERS:
                if flags.get(name) is not None:
                    flags[name] = parse_key_values(flags[name], what=f"--{name.replace('_', '-')}")
            with flags_of_command(**flags):
                return command(*args, **kwargs)

        parameters = [*signature.parameters.values(), *extra]
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return cast(F, run)

    return decorate
