"""Redrive a failed execution of any state machine of a stack, and wait for its redriven run to end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from sandbox.errors import SandboxError, UsageError
from sandbox.executions import (
    ExecutionResult,
    find_execution,
    machine_of_execution,
    name_of_arn,
    read_execution,
    wait_for_end,
)
from sandbox.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

# An engine without the action answers one of these (LocalStack: UnknownOperationException).
UNKNOWN_ACTION_CODES = frozenset({"InvalidAction", "UnknownOperationException", "UnknownOperation"})


class ExecutionNotRedrivableError(UsageError):
    """Step Functions refuses to redrive the execution (AWS's ExecutionNotRedrivable), with its reason."""


@dataclass(frozen=True)
class RedriveResult:
    """How a redriven execution ended, and which redrive it was."""

    execution: ExecutionResult
    redrive_count: int


def start_redrive(sfn: SFNClient, arn: str) -> None:
    """Ask Step Functions to redrive the execution. Refusals become one-line errors."""
    name = name_of_arn(arn)
    try:
        sfn.redrive_execution(executionArn=arn)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        message = error.response["Error"].get("Message") or code
        if code == "ExecutionNotRedrivable":
            reason = message.split(": 'arn:", 1)[0]
            raise ExecutionNotRedrivableError(
                f"execution {name} cannot be redriven: {reason}",
                hint="only a FAILED, TIMED_OUT or ABORTED Standard execution of the last 14 days can be "
                "redriven; start a new one with `sandbox execute`",
            ) from error
        if code in UNKNOWN_ACTION_CODES:
            raise SandboxError(
                "this engine does not implement RedriveExecution",
                hint="run the embedded engine (`sandbox up`), whose patch implements it",
            ) from error
        raise


def redrive_execution(
    stack: LocalStack, region: str, stack_name: str, ref: str | None, *, wait_seconds: float = 60
) -> RedriveResult:
    """Redrive the execution (its ARN or name; the latest without one), wait until it ends, read how it went."""
    arn = find_execution(stack, region, stack_name, ref)
    machine = machine_of_execution(stack, region, stack_name, arn)
    sfn: SFNClient = stack.client("stepfunctions", region)
    start_redrive(sfn, arn)
    described = wait_for_end(sfn, arn, machine, wait_seconds)
    return RedriveResult(read_execution(sfn, arn, machine), int(described.get("redriveCount") or 0))
