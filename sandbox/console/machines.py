"""The console's view of any state machine of the stack: its graph, its executions, one execution's path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.console.graph import draw_graph
from sandbox.executions import (
    ExecutionNotFoundError,
    StateMachineRef,
    executions_of_machine,
    find_execution,
    machine_of_execution,
    resolve_state_machine,
    state_machines,
)
from sandbox.logs import iso
from sandbox.orders import ApiResponse, OrdersClient
from sandbox.stack import LocalStack
from sandbox.trace import ExecutionTrace, trace_execution
from sandbox.trace.execution_reading import read_definition

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

MAX_LISTED = 100  # executions listed per state machine, newest first


class NoOrderApi(OrdersClient):
    """The order API of a stack that has none (not the demo's): no orders, and none to read."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9/")

    def list_orders(self, *, limit: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        return []

    def get_order(self, order_id: str) -> ApiResponse:
        return ApiResponse(404, {"message": "this stack has no order API"}, b"")


def list_machines(stack: LocalStack, region: str, stack_name: str) -> list[dict[str, Any]]:
    """The stack's state machines, each with its logical id, name and ARN."""
    return [machine.to_json() for machine in state_machines(stack, region, stack_name)]


def definition_of(stack: LocalStack, region: str, machine: StateMachineRef) -> dict[str, Any]:
    definition = read_definition(stack.client("stepfunctions", region), machine.arn)
    if definition is None:
        raise ExecutionNotFoundError(
            f"the engine has no definition of {machine.label}", hint="redeploy with `sandbox up`"
        )
    return definition


def machine_graph(stack: LocalStack, region: str, stack_name: str, wanted: str | None) -> dict[str, Any]:
    """A state machine drawn from the definition the engine holds."""
    machine = resolve_state_machine(stack, region, stack_name, wanted)
    return {"stateMachine": machine.to_json(), "graph": draw_graph(definition_of(stack, region, machine))}


def list_executions(stack: LocalStack, region: str, stack_name: str, wanted: str) -> dict[str, Any]:
    """A state machine's executions, newest first, with their status and times."""
    machine = resolve_state_machine(stack, region, stack_name, wanted)
    sfn: SFNClient = stack.client("stepfunctions", region)
    listed = executions_of_machine(sfn, machine)[:MAX_LISTED]
    return {
        "stateMachine": machine.to_json(),
        "executions": [
            {
                "name": execution["name"],
                "executionArn": execution["executionArn"],
                "status": execution["status"],
                "startedAt": iso(execution["startDate"]),
                "stoppedAt": iso(execution["stopDate"]) if execution.get("stopDate") else None,
                "redriveCount": int(execution.get("redriveCount") or 0),
            }
            for execution in listed
        ],
    }


def steps_of(trace: ExecutionTrace) -> list[dict[str, Any]]:
    """The top-level states an execution entered, as the graph marks an order's saga steps."""
    return [
        {
            "name": state.name,
            "attempts": len(state.attempts),
            "status": state.status,
            "durationMs": state.duration_ms,
            "errors": [attempt.error for attempt in state.attempts if attempt.error]
            or ([state.error] if state.error else []),
            "isCompensation": state.is_compensation,
        }
        for state in trace.states
        if state.depth == 0
    ]


def execution_view(stack: LocalStack, region: str, stack_name: str, ref: str) -> dict[str, Any]:
    """One execution: its trace, and its state machine's graph with the path it took."""
    arn = find_execution(stack, region, stack_name, ref)
    trace = trace_execution(stack, region, stack_name, arn)
    machine = machine_of_execution(stack, region, stack_name, arn)
    run = {"steps": steps_of(trace), "sagaStatus": trace.status}
    return {
        "stateMachine": machine.to_json(),
        "trace": trace.to_json(),
        "graph": draw_graph(definition_of(stack, region, machine), run),
    }
