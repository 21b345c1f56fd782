"""Options every command spells the same way: one definition each."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


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
