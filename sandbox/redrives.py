"""Redrive a failed execution of any state machine of a stack, and wait for its redriven run to end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sandbox.errors import SandboxError, UsageError
from sandbox.executions import (
    TERMINAL_STATUSES,
    ExecutionResult,
    find_execution,
    machine_of_execution,
    name_of_arn,
    read_execution,
)
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

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
    redriven_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.execution.to_json(),
            "redriveCount": self.redrive_count,
            "redrivenAt": self.redriven_at.isoformat() if self.redriven_at else None,
        }


def redrive_status(sfn: SFNClient, arn: str) -> tuple[str | None, str | None]:
    """The execution's ``redriveStatus`` and ``redriveStatusReason`` as DescribeExecution reports them."""
    described = sfn.describe_execution(executionArn=arn)
    return described.get("redriveStatus"), described.get("redriveStatusReason")


def start_redrive(sfn: SFNClient, arn: str) -> datetime:
    """Ask Step Functions to redrive the execution; its redriveDate. Refusals become one-line errors."""
    name = name_of_arn(arn)
    try:
        return sfn.redrive_execution(executionArn=arn)["redriveDate"]
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

    def ended() -> dict[str, Any] | None:
        described = sfn.describe_execution(executionArn=arn)
        return dict(described) if described["status"] in TERMINAL_STATUSES else None

    try:
        described = wait_until(
            ended,
            timeout=wait_seconds,
            what=f"redriven execution {name_of_arn(arn)} of {machine.label} to end",
        )
    except SandboxError as error:
        error.hint = f"it is still running: `sandbox trace {name_of_arn(arn)}` shows it so far"
        raise
    return RedriveResult(
        execution=read_execution(sfn, arn, machine),
        redrive_count=int(described.get("redriveCount") or 0),
        redriven_at=described.get("redriveDate"),
    )
