"""`sandbox saga map`: what runs when each step of a state machine fails, read from its definition."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import JsonFlag, StateMachineArgument, project_command
from cli.output import console, escape, print_json
from sandbox.errors import UsageError

# The map's reader and rich's tables load in the command that draws them.
if TYPE_CHECKING:
    from rich.table import Table

    from sandbox.executions import StateMachineRef
    from sandbox.saga_map import CatchRoute, FailurePath, RetryRule, SagaMap, StepFailure
    from sandbox.settings import Settings
    from sandbox.stack import LocalStack

SHOWN_ERRORS = 2  # a Retry's first error names; the rest are counted
FINDING_STYLES = {
    "uncompensated": "red",
    "no-catch": "red",
    "swallowed": "yellow",
    "compensates-unrun": "cyan",
}
ENDING_STYLES = {"fail": "red", "success": "yellow", "loop": "dim"}


def map_saga(
    state_machine: StateMachineArgument = None,
    definition: Annotated[
        Path | None,
        typer.Option(
            "--definition",
            help="Read this .asl.json or .asl.yaml file instead of the deployed state machine (no engine needed).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Map what runs when each step of a state machine fails, and flag what a reviewer would ask about.

    For each Task: its Retry rules, its Catch routes, every path of states a Catch leads to (each branch of a Choice), how it ends, and which earlier steps it undoes. Findings: uncompensated (an earlier effect left in place on a failure path), compensates-unrun (a compensation of a step that has not run there), swallowed (a Catch that ends in success), no-catch (a step after others with no Catch for some error). A compensation is paired with its step by the same function with another action, else by its name (CancelHotel undoes BookHotel).
    """
    from sandbox.saga_map import DefinitionError, build_saga_map, load_definition

    if definition is not None:
        if state_machine is not None:
            raise UsageError(
                "give a STATE_MACHINE or --definition, not both",
                hint="--definition reads a file; STATE_MACHINE names a deployed one",
            )
        asl = load_definition(definition)
        about: dict[str, Any] = {
            "logicalId": None,
            "name": definition.name.split(".")[0],
            "arn": None,
            "definitionFile": str(definition),
        }
        label = str(definition)
    else:
        from sandbox.settings import Settings

        settings = Settings.load()
        stack = find_stack(settings)
        machine = resolve_state_machine(stack, settings.region, settings.stack_name, state_machine)
        found = read_definition(stack.client("stepfunctions", settings.region), machine.arn)
        if found is None:
            raise DefinitionError(
                f"the engine gave no definition for {machine.label}",
                hint="map its file instead: sandbox saga map --definition FILE",
            )
        asl = found
        about = machine.to_json()
        label = machine.label
    saga = build_saga_map(asl)
    if json_output:
        print_json({"stateMachine": about, **saga.to_json()})
    else:
        print_saga_map(label, saga)


# The deployed machine, read through these module names (tests replace them); each loads its
# reader on first use, so registering the command loads none.
def find_stack(settings: Settings) -> LocalStack:
    from sandbox.stack import find_stack as find

    return find(settings)


def resolve_state_machine(
    stack: LocalStack, region: str, stack_name: str, wanted: str | None
) -> StateMachineRef:
    from sandbox.executions import resolve_state_machine as resolve

    return resolve(stack, region, stack_name, wanted)


def read_definition(sfn: Any, arn: str) -> dict[str, Any] | None:
    from sandbox.trace.execution_reading import read_definition as read

    return read(sfn, arn)


def _errors(errors: tuple[str, ...]) -> str:
    shown = ", ".join(errors[:SHOWN_ERRORS])
    return f"{shown} +{len(errors) - SHOWN_ERRORS}" if len(errors) > SHOWN_ERRORS else shown


def _seconds(value: float) -> str:
    return f"{value:g}s"


def retry_text(rule: RetryRule) -> str:
    """One Retry rule in a line: which errors, how many retries, how far apart."""
    if rule.max_attempts == 0:
        return f"{_errors(rule.error_equals)}: not retried"
    spacing = _seconds(rule.interval_seconds)
    if rule.backoff_rate != 1:
        spacing += f" ×{rule.backoff_rate:g}"
    if rule.max_delay_seconds is not None:
        spacing += f" ≤{_seconds(rule.max_delay_seconds)}"
    if rule.jitter_strategy and rule.jitter_strategy != "NONE":
        spacing += f", {rule.jitter_strategy.lower()} jitter"
    return f"{_errors(rule.error_equals)}: {rule.max_attempts}× {spacing}"


def _route_text(route: CatchRoute, path: FailurePath) -> str:
    via = f" (via {route.via})" if route.via else ""
    return f"{_errors(route.error_equals)}{via} → {' → '.join(path.states or (path.terminal,))}"


def _ending_text(path: FailurePath) -> str:
    words = {"fail": "fails", "success": "succeeds (swallowed)", "loop": f"loops to {path.terminal}"}
    style = ENDING_STYLES.get(path.ends_in, "white")
    return f"[{style}]{words.get(path.ends_in, path.ends_in)}[/{style}]"


def _undoes_text(step: StepFailure, path: FailurePath) -> str:
    undone = [pairing.step for pairing in path.undoes]
    text = ", ".join(undone)
    if step.role == "effect" and path.leaves:
        left = f"[red]leaves {', '.join(path.leaves)}[/red]"
        text = f"{text}; {left}" if text else left
    return text


def _step_rows(step: StepFailure) -> list[list[str]]:
    """Table rows of one step: one per path a failure can take (plus one for what no Catch takes)."""
    rows: list[list[str]] = []
    for route in step.catches:
        for path in route.paths:
            rows.append([escape(_route_text(route, path)), _ending_text(path), _undoes_text(step, path)])
    if not step.is_caught_all:
        what = "other errors" if step.catches else "no Catch"
        left = ", ".join(step.earlier) if step.role == "effect" else ""
        rows.append(
            [f"{what} → the execution fails", "[red]fails[/red]", f"[red]leaves {left}[/red]" if left else ""]
        )
    return rows


def saga_map_table(saga: SagaMap) -> Table:
    """Every Task with its retries and the paths its failure takes."""
    from rich.table import Table

    table = Table("step", "retries", "on failure → then runs", "ends", "undoes")
    for step in saga.steps:
        name = (
            f"[bold]{step.state}[/bold]"
            if step.role == "effect"
            else f"{step.state} [dim]({step.role})[/dim]"
        )
        retries = "\n".join(escape(retry_text(rule)) for rule in step.retries) or "[dim]none[/dim]"
        for number, row in enumerate(_step_rows(step)):
            table.add_row(name if number == 0 else "", retries if number == 0 else "", *row)
        table.add_section()
    return table


def print_saga_map(label: str, saga: SagaMap) -> None:
    """The map for people: the happy path, which compensation undoes which step, the table, the findings."""
    console.print(f"[bold]saga map of {escape(label)}[/bold]")
    console.print(f"happy path: {' → '.join(saga.happy_path)}")
    for pairing in saga.pairings:
        console.print(f"  ↩ {pairing.compensation} undoes {pairing.step} [dim]({pairing.reason})[/dim]")
    console.print(saga_map_table(saga))
    if not saga.findings:
        console.print("[green]no findings[/green]")
        return
    console.print(f"findings ({len(saga.findings)}):")
    for finding in saga.findings:
        style = FINDING_STYLES.get(finding.kind, "white")
        console.print(f"  [{style}]{finding.kind}[/{style}] {escape(finding.message)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `sandbox saga` and its commands to the CLI."""
    saga_app = typer.Typer(
        help="A saga's failure map: for each step, what runs when it fails and what that undoes.",
        no_args_is_help=True,
    )
    saga_app.command(
        "map",
        epilog="Examples:  sandbox saga map    sandbox saga map OrderSagaStateMachine --json    "
        "sandbox saga map --definition state_machines/order_saga.asl.json    "
        "sandbox saga map -t ../my-app/template.yaml BookingStateMachine",
    )(project_command()(map_saga))
    app.add_typer(saga_app, name="saga")
