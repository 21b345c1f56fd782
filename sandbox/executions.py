"""Any state machine of a stack: find it, run an execution and wait for it, find an execution again."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sandbox.errors import SandboxError, UsageError
from sandbox.json_text import parse_json
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_stepfunctions import SFNClient

STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


class StateMachineNotFoundError(UsageError):
    """The stack has no state machine by that logical id, name or ARN (or none at all)."""


class ExecutionNotFoundError(UsageError):
    """No execution of the stack's state machines has that ARN or name."""


@dataclass(frozen=True)
class StateMachineRef:
    """One state machine of the stack: its logical id in the template, its name and ARN."""

    logical_id: str | None
    name: str
    arn: str

    @property
    def label(self) -> str:
        """How people name it: the logical id, else the name."""
        return self.logical_id or self.name

    def to_json(self) -> dict[str, Any]:
        return {"logicalId": self.logical_id, "name": self.name, "arn": self.arn}


def name_of_arn(arn: str) -> str:
    """The last part of a state machine's or execution's ARN (its name)."""
    return arn.rsplit(":", 1)[-1]


def state_machines(stack: LocalStack, region: str, stack_name: str) -> list[StateMachineRef]:
    """The stack's state machines, in the template's order as CloudFormation lists them."""
    return state_machines_of(stack.client("cloudformation", region), stack_name)


def state_machines_of(cfn: CloudFormationClient, stack_name: str) -> list[StateMachineRef]:
    """The state machines of a stack, read through any CloudFormation client (the engine's, AWS's)."""
    found: list[StateMachineRef] = []
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            arn = resource.get("PhysicalResourceId") or ""
            if resource["ResourceType"] == STATE_MACHINE_TYPE and arn:
                found.append(StateMachineRef(resource["LogicalResourceId"], name_of_arn(arn), arn))
    return found


def _known(machines: list[StateMachineRef]) -> str:
    return ", ".join(machine.label for machine in machines)


def resolve_state_machine(
    stack: LocalStack, region: str, stack_name: str, wanted: str | None
) -> StateMachineRef:
    """The state machine named by its logical id, name or ARN; without one, the stack's only one."""
    machines = state_machines(stack, region, stack_name)
    if not machines:
        raise StateMachineNotFoundError(
            f"stack {stack_name} has no state machine",
            hint="add an AWS::Serverless::StateMachine to the template and run `sandbox up`",
        )
    if wanted is None:
        if len(machines) > 1:
            raise StateMachineNotFoundError(
                f"stack {stack_name} has {len(machines)} state machines: name one",
                hint=f"choose one of: {_known(machines)}",
            )
        return machines[0]
    for machine in machines:
        if wanted in (machine.logical_id, machine.name, machine.arn):
            return machine
    raise StateMachineNotFoundError(
        f"stack {stack_name} has no state machine {wanted!r}", hint=f"choose one of: {_known(machines)}"
    )


@dataclass(frozen=True)
class ExecutionResult:
    """How one execution ended: status, input and output, error and cause, the states it entered."""

    arn: str
    name: str
    state_machine: StateMachineRef
    status: str  # SUCCEEDED, FAILED, TIMED_OUT or ABORTED (RUNNING only if read before its end)
    input: Any
    output: Any
    error: str | None
    cause: str | None
    started_at: datetime
    stopped_at: datetime | None
    states: list[str]  # state names entered, in order, repeats kept

    @property
    def is_succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def to_json(self) -> dict[str, Any]:
        return {
            "executionArn": self.arn,
            "name": self.name,
            "stateMachine": self.state_machine.to_json(),
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "startedAt": self.started_at.isoformat(),
            "stoppedAt": self.stopped_at.isoformat() if self.stopped_at else None,
            "states": self.states,
        }


def read_input(text: str) -> Any:
    """An execution input given on the command line: JSON, or ``@path`` to a JSON file."""
    source = "--input"
    if text.startswith("@"):
        path = text[1:]
        source = f"--input @{path}"
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as error:
            raise UsageError(
                f"{source}: cannot read {path}: {error.strerror or error}",
                hint="give a JSON file that exists",
            ) from error
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(
            f"{source} is not JSON: {error}",
            hint='give a JSON document, e.g. --input \'{"id": "a-1"}\', or @FILE',
        ) from error


def history_of(sfn: SFNClient, arn: str) -> list[dict[str, Any]]:
    """The execution's whole history, oldest event first."""
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(dict(event) for event in page["events"])
    return sorted(events, key=lambda event: int(event["id"]))


def entered_states(history: list[dict[str, Any]]) -> list[str]:
    """The names of the states entered, in order (a state entered twice is listed twice)."""
    return [
        str(event["stateEnteredEventDetails"]["name"])
        for event in history
        if str(event["type"]).endswith("StateEntered") and event.get("stateEnteredEventDetails")
    ]


def read_execution(sfn: SFNClient, arn: str, machine: StateMachineRef) -> ExecutionResult:
    """An execution as it stands now, with the states its history entered."""
    described = sfn.describe_execution(executionArn=arn)
    return ExecutionResult(
        arn=arn,
        name=described["name"],
        state_machine=machine,
        status=str(described["status"]),
        input=parse_json(described.get("input")),
        output=parse_json(described.get("output")),
        error=described.get("error"),
        cause=described.get("cause"),
        started_at=described["startDate"],
        stopped_at=described.get("stopDate"),
        states=entered_states(history_of(sfn, arn)),
    )


def run_execution(
    stack: LocalStack,
    region: str,
    stack_name: str,
    wanted: str | None,
    input: Any = None,
    *,
    name: str | None = None,
    wait_seconds: float = 60,
    test_case: str | None = None,
) -> ExecutionResult:
    """Start an execution of the state machine, wait until it ends, and read how it went.

    With ``test_case``, the engine answers the tasks its mock configuration names for that case.
    """
    machine = resolve_state_machine(stack, region, stack_name, wanted)
    sfn: SFNClient = stack.client("stepfunctions", region)
    request: dict[str, Any] = {
        "stateMachineArn": f"{machine.arn}#{test_case}" if test_case else machine.arn,
        "input": json.dumps({} if input is None else input),
    }
    if name:
        request["name"] = name
    try:
        arn = sfn.start_execution(**request)["executionArn"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ExecutionAlreadyExists":
            raise UsageError(
                f"{machine.label} already has an execution named {name!r}",
                hint="give another --name, or none for a generated one",
            ) from error
        raise

    wait_for_end(sfn, arn, machine, wait_seconds)
    return read_execution(sfn, arn, machine)


def wait_for_end(sfn: SFNClient, arn: str, machine: StateMachineRef, wait_seconds: float) -> dict[str, Any]:
    """DescribeExecution of the execution once it has ended (an error naming it past ``wait_seconds``)."""

    def ended() -> dict[str, Any] | None:
        described = dict(sfn.describe_execution(executionArn=arn))
        return described if described["status"] in TERMINAL_STATUSES else None

    try:
        return wait_until(
            ended, timeout=wait_seconds, what=f"execution {name_of_arn(arn)} of {machine.label} to end"
        )
    except SandboxError as error:
        error.hint = f"it is still running: `sandbox trace {name_of_arn(arn)}` shows it so far"
        raise


def describe_execution(
    sfn: SFNClient, arn: str, *, hint: str = "list executions with `sandbox trace --last`"
) -> dict[str, Any]:
    """DescribeExecution; an execution the engine does not know is an ExecutionNotFoundError naming it."""
    try:
        return dict(sfn.describe_execution(executionArn=arn))
    except ClientError as error:
        if error.response["Error"]["Code"] == "ExecutionDoesNotExist":
            raise ExecutionNotFoundError(f"no execution {arn}", hint=hint) from error
        raise


def is_execution_arn(text: str) -> bool:
    return text.startswith("arn:") and ":execution:" in text


def executions_of_machine(sfn: SFNClient, machine: StateMachineRef) -> list[dict[str, Any]]:
    """Every execution of the state machine, newest first."""
    found: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine.arn):
        found.extend(dict(execution) for execution in page["executions"])
    return sorted(found, key=lambda execution: execution["startDate"], reverse=True)


def find_execution(
    stack: LocalStack, region: str, stack_name: str, ref: str | None, *, last: bool = False
) -> str:
    """An execution's ARN from its ARN or its name; with ``last`` (or no ``ref``), the latest one.

    With ``last``, ``ref`` names the state machine to take the latest execution of (any, without).
    """
    sfn: SFNClient = stack.client("stepfunctions", region)
    if ref is not None and not last and is_execution_arn(ref):
        describe_execution(sfn, ref)
        return ref
    if last or ref is None:
        machines = (
            [resolve_state_machine(stack, region, stack_name, ref)]
            if ref
            else state_machines(stack, region, stack_name)
        )
        latest = [executions[0] for m in machines if (executions := executions_of_machine(sfn, m))]
        if not latest:
            where = machines[0].label if ref else f"stack {stack_name}"
            raise ExecutionNotFoundError(
                f"{where} has no execution yet", hint="start one with `sandbox execute`"
            )
        return str(max(latest, key=lambda execution: execution["startDate"])["executionArn"])
    machines = state_machines(stack, region, stack_name)
    named = [
        (machine, execution)
        for machine in machines
        for execution in executions_of_machine(sfn, machine)
        if execution["name"] == ref
    ]
    if not named:
        raise ExecutionNotFoundError(
            f"no execution named {ref!r} in the state machines of stack {stack_name}",
            hint=f"give its name or ARN; state machines: {_known(machines) or 'none'}",
        )
    if len(named) > 1:
        raise ExecutionNotFoundError(
            f"{len(named)} executions are named {ref!r}: {', '.join(m.label for m, _ in named)}",
            hint="give its ARN",
        )
    return str(named[0][1]["executionArn"])


def machine_of_execution(stack: LocalStack, region: str, stack_name: str, arn: str) -> StateMachineRef:
    """The state machine an execution ARN belongs to (the stack's own when it is one of them)."""
    machine_arn = arn.replace(":execution:", ":stateMachine:", 1).rsplit(":", 1)[0]
    for machine in state_machines(stack, region, stack_name):
        if machine.arn == machine_arn:
            return machine
    return StateMachineRef(None, name_of_arn(machine_arn), machine_arn)
