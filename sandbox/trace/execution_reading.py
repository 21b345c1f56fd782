"""Reading the engine for an execution's trace: its description, history, definition and functions' logs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sandbox.errors import SandboxError
from sandbox.executions import describe_execution, history_of, machine_of_execution
from sandbox.logs import Invocation, fetch_events, group_invocations, parse_events
from sandbox.stack import LocalStack
from sandbox.trace.execution import (
    ExecutionTrace,
    build_execution_trace,
    function_name_of,
    function_of_state,
    state_definitions,
    with_holds,
    with_injections,
)
from sandbox.trace.model import as_datetime

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_stepfunctions import SFNClient

# Logs are read from a little before the execution started until a little after it stopped.
LOG_MARGIN = timedelta(seconds=5)


def read_definition(sfn: SFNClient, state_machine_arn: str) -> dict[str, Any] | None:
    """The state machine's ASL as data; None when the engine cannot give it."""
    try:
        text = sfn.describe_state_machine(stateMachineArn=state_machine_arn)["definition"]
    except ClientError:
        return None
    try:
        definition = json.loads(text)
    except ValueError:
        return None
    return definition if isinstance(definition, dict) else None


def functions_invoked(definition: dict[str, Any] | None, history: list[dict[str, Any]]) -> list[str]:
    """The names of the Lambda functions the execution's tasks invoke (definition and history)."""
    names: list[str] = []
    for state in state_definitions(definition).values():
        name = function_of_state(state)
        if name and name not in names:
            names.append(name)
    for event in history:
        details = (
            event.get("taskScheduledEventDetails") or event.get("lambdaFunctionScheduledEventDetails") or {}
        )
        try:
            parameters = json.loads(details.get("parameters") or "{}")
        except ValueError:
            parameters = {}
        name = function_name_of(parameters.get("FunctionName") if isinstance(parameters, dict) else None)
        name = name or (
            function_name_of(details.get("resource"))
            if ":function:" in str(details.get("resource"))
            else None
        )
        if name and name not in names:
            names.append(name)
    return names


def read_invocations(
    logs: CloudWatchLogsClient, functions: list[str], since: datetime, until: datetime | None
) -> list[Invocation]:
    """The runs of the functions (``/aws/lambda/NAME``) between ``since`` and ``until``."""
    start_ms = int((since - LOG_MARGIN).timestamp() * 1000)
    invocations: list[Invocation] = []
    for name in functions:
        events = fetch_events(logs, name, start_ms=start_ms)
        if until is not None:
            end_ms = int((until + LOG_MARGIN).timestamp() * 1000)
            events = [event for event in events if int(event.get("timestamp", 0)) <= end_ms]
        invocations += group_invocations(parse_events(name, events))
    return invocations


def trace_execution(stack: LocalStack, region: str, stack_name: str, execution_arn: str) -> ExecutionTrace:
    """The trace of one execution of any state machine, read from the running engine."""
    sfn: SFNClient = stack.client("stepfunctions", region)
    described = describe_execution(sfn, execution_arn)
    machine = machine_of_execution(stack, region, stack_name, execution_arn)
    definition = read_definition(sfn, str(described.get("stateMachineArn") or machine.arn))
    history = history_of(sfn, execution_arn)
    functions = functions_invoked(definition, history)
    try:
        invocations: list[Invocation] | None = read_invocations(
            stack.client("logs", region),
            functions,
            as_datetime(described["startDate"]),
            as_datetime(described["stopDate"]) if described.get("stopDate") else None,
        )
    except (ClientError, SandboxError):
        invocations = None
    trace = build_execution_trace(
        described, history, state_machine=machine.label, definition=definition, invocations=invocations
    )
    return with_holds(
        with_injections(trace, injected_faults(stack, trace.name)), debugger_holds(stack, trace.name)
    )


def debugger_holds(stack: LocalStack, execution: str) -> list[dict[str, Any]]:
    """How long a debugger held each of an execution's invocations; none on an engine without one."""
    from sandbox.debugging import DebugRoute, DebugUnsupportedError

    try:
        return DebugRoute.of_engine(stack.engine).holds(execution)
    except DebugUnsupportedError:
        return []


def injected_faults(stack: LocalStack, execution: str) -> list[dict[str, Any]]:
    """The faults the engine injected into an execution; none on an engine without the fault hook."""
    from sandbox.faults import FaultsUnsupportedError, fault_book

    try:
        return fault_book(stack).injections(execution)
    except FaultsUnsupportedError:
        return []
