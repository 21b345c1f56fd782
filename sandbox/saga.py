"""Saga executions from the operator's side: count them, replay one as a redrive would."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox.errors import SandboxError
from sandbox.orders import TERMINAL_SAGA_STATUSES
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def executions_of(stack: LocalStack, region: str, order_id: str) -> list[dict[str, Any]]:
    """Every execution of the saga started for an order (its own and any replays)."""
    sfn: SFNClient = stack.client("stepfunctions", region)
    found: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(
        stateMachineArn=stack.outputs["StateMachineArn"]
    ):
        found += [
            dict(e)
            for e in page["executions"]
            if e["name"] == order_id or e["name"].startswith(f"{order_id}-replay-")
        ]
    return found


def replay_saga(stack: LocalStack, region: str, order_id: str, *, timeout: float = 60) -> dict[str, Any]:
    """Start the order's saga again with its original input and wait for it to end."""
    sfn: SFNClient = stack.client("stepfunctions", region)
    machine = stack.outputs["StateMachineArn"]
    try:
        original = sfn.describe_execution(executionArn=execution_arn(machine, order_id))
    except sfn.exceptions.ExecutionDoesNotExist as error:
        raise SandboxError(f"order {order_id} has no saga execution to replay") from error
    name = f"{order_id}-replay-{int(time.time() * 1000)}"
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input=original["input"])["executionArn"]

    def finished() -> dict[str, Any] | None:
        execution = sfn.describe_execution(executionArn=arn)
        return dict(execution) if execution["status"] in TERMINAL_SAGA_STATUSES else None

    execution = wait_until(finished, timeout=timeout, what=f"the replay of order {order_id}")
    return {"executionArn": arn, "name": name, "status": execution["status"]}
