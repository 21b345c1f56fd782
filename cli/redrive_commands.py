"""`sandbox redrive`: restart a failed execution where it stopped, wait for it, print its trace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.options import JsonFlag, project_command
from cli.output import error_console, print_json

if TYPE_CHECKING:
    from sandbox.redrives import RedriveResult


def redrive(
    execution: Annotated[
        str | None,
        typer.Argument(
            help="The execution: its ARN or name (default: the stack's latest execution).",
            show_default=False,
        ),
    ] = None,
    wait_seconds: Annotated[
        float,
        typer.Option("--wait-seconds", min=0.1, help="How long to wait for the redriven execution to end."),
    ] = 60,
    json_output: JsonFlag = False,
) -> None:
    """Redrive a FAILED, TIMED_OUT or ABORTED execution: it restarts at the state it did not complete, with that state's input; the states that succeeded are not run again.

    As Step Functions' RedriveExecution on AWS: the same execution (ARN, input, definition it started with), its history continued after an ExecutionRedriven event. Fix the handler first (`sandbox watch` hot-reloads it). Waits until it ends and prints its trace; exit code 0 when it succeeded, 1 otherwise.
    """
    # Loaded here, not with the CLI: only this command redrives.
    from cli.trace_commands import print_execution_trace
    from sandbox.redrives import redrive_execution
    from sandbox.settings import Settings
    from sandbox.stack import find_stack
    from sandbox.trace import trace_execution

    settings = Settings.load()
    stack = find_stack(settings)

    def run() -> RedriveResult:
        return redrive_execution(
            stack, settings.region, settings.stack_name, execution, wait_seconds=wait_seconds
        )

    if json_output or not error_console.is_terminal:
        result = run()
    else:
        with error_console.status(f"redriving {execution or 'the latest execution'}…"):
            result = run()
    traced = trace_execution(stack, settings.region, settings.stack_name, result.execution.arn)
    if json_output:
        print_json(
            {
                **traced.to_json(),
                "isSucceeded": result.execution.is_succeeded,
                "redriveCount": result.redrive_count,
            }
        )
    else:
        print_execution_trace(traced)
    if not result.execution.is_succeeded:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox redrive EXECUTION_NAME    sandbox redrive EXECUTION_ARN --json    "
        "sandbox redrive    sandbox redrive --wait-seconds 300"
    )(project_command()(redrive))
