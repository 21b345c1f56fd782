"""`sandbox execute`: start an execution of any state machine of the stack, wait for it, print its trace."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.options import JsonFlag, project_command
from cli.output import error_console, print_json
from cli.trace_commands import print_execution_trace
from sandbox.executions import read_input, resolve_state_machine, run_execution
from sandbox.settings import Settings
from sandbox.stack import find_stack
from sandbox.trace import trace_execution


def execute(
    state_machine: Annotated[
        str | None,
        typer.Argument(
            help="The state machine: its logical id, name or ARN (default: the stack's only one).",
            show_default=False,
        ),
    ] = None,
    input_text: Annotated[
        str | None,
        typer.Option(
            "--input", help="The execution's input: JSON, or @FILE to read it from a file (default: {})."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The execution's name (default: a generated one).")
    ] = None,
    wait_seconds: Annotated[
        float, typer.Option("--wait-seconds", min=0.1, help="How long to wait for the execution to end.")
    ] = 60,
    json_output: JsonFlag = False,
) -> None:
    """Start an execution of a state machine of the stack, wait until it ends, and print its trace.

    The trace shows every state entered, each task's attempts with their errors, which Catch sent a failure where, the compensation that ran after it, and each Lambda task's log lines. Exit code 0 when the execution succeeded, 1 when it failed, timed out or was aborted.
    """
    execution_input: Any = read_input(input_text) if input_text is not None else None
    settings = Settings.load()
    stack = find_stack(settings)
    machine = resolve_state_machine(stack, settings.region, settings.stack_name, state_machine)

    def run() -> Any:
        return run_execution(
            stack, settings.region, settings.stack_name, machine.arn, execution_input,
            name=name, wait_seconds=wait_seconds,
        )  # fmt: skip

    if json_output or not error_console.is_terminal:
        result = run()
    else:
        with error_console.status(f"running {machine.label}…"):
            result = run()
    traced = trace_execution(stack, settings.region, settings.stack_name, result.arn)
    if json_output:
        print_json({**traced.to_json(), "isSucceeded": result.is_succeeded})
    else:
        print_execution_trace(traced)
    if not result.is_succeeded:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox execute    sandbox execute OrderSagaStateMachine --input '{\"order\": {...}}'    "
        "sandbox execute MyStateMachine --input @event.json --name try-1    sandbox execute --json"
    )(project_command()(execute))
