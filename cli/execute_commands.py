"""`sandbox execute`: start an execution of any state machine of the stack, wait for it, print its trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import JsonFlag, StateMachineArgument, project_command
from cli.output import error_console, print_json
from sandbox.errors import UsageError


def execute(
    state_machine: StateMachineArgument = None,
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
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="Break a step of this execution only: TARGET:KIND[:ATTEMPTS] (e.g. ChargePayment:error, "
            "ChargePayment:error-after:1, ReserveInventory:delay=800); repeatable.",
            show_default=False,
        ),
    ] = None,
    faults_plan: Annotated[
        Path | None,
        typer.Option(
            "--faults", help="A fault plan file (YAML or JSON) whose rules apply to this execution only."
        ),
    ] = None,
    mock_config: Annotated[
        Path | None,
        typer.Option("--mock-config", help="A Step Functions Local mock configuration file, run unchanged."),
    ] = None,
    test_case: Annotated[
        str | None, typer.Option("--test-case", help="The mock configuration's test case to run.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Start an execution of a state machine of the stack, wait until it ends, and print its trace.

    The trace shows every state entered, each task's attempts with their errors, which Catch sent a failure where, the compensation that ran after it, and each Lambda task's log lines. Exit code 0 when the execution succeeded, 1 when it failed, timed out or was aborted.
    """
    if (mock_config is None) != (test_case is None):
        raise UsageError("--mock-config and --test-case go together: the file, and which of its test cases")
    # Loaded here, not with the CLI: only this command runs executions.
    from cli.trace_commands import print_execution_trace
    from sandbox.executions import read_input, resolve_state_machine, run_execution
    from sandbox.faults import FaultSpec, faults_for_execution, read_plan
    from sandbox.mock_config import apply_mock_config, for_machine, read_mock_config
    from sandbox.settings import Settings
    from sandbox.stack import find_stack
    from sandbox.trace import trace_execution

    execution_input: Any = read_input(input_text) if input_text is not None else None
    specs = [FaultSpec.parse_flag(text) for text in fault or []] + (
        read_plan(faults_plan) if faults_plan else []
    )
    settings = Settings.load()
    stack = find_stack(settings)
    machine = resolve_state_machine(stack, settings.region, settings.stack_name, state_machine)
    if mock_config is not None and test_case is not None:
        apply_mock_config(stack, for_machine(read_mock_config(mock_config), machine, test_case, mock_config))
    with faults_for_execution(
        stack, settings.region, settings.stack_name, specs, name, prefix="run"
    ) as named:

        def run() -> Any:
            return run_execution(
                stack, settings.region, settings.stack_name, machine.arn, execution_input,
                name=named, wait_seconds=wait_seconds, test_case=test_case,
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
        "sandbox execute MyStateMachine --input @event.json --name try-1    "
        "sandbox execute --fault ChargePayment:error-after    "
        "sandbox execute --mock-config MockConfigFile.json --test-case HappyPath    sandbox execute --json"
    )(project_command()(execute))
