"""`sandbox execute` and the trace of any execution, on the session engine: the demo's saga started
directly (no order API), several at once, and a state machine that is not in the stack."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.executions import (
    ExecutionNotFoundError,
    ExecutionResult,
    StateMachineNotFoundError,
    find_execution,
    resolve_state_machine,
    run_execution,
    state_machines,
)
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.trace import ExecutionTrace, render_execution_text, trace_execution
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration
SAGA = "OrderSagaStateMachine"  # the demo saga's logical id in template.yaml
HAPPY_PATH = ["ReserveInventory", "ChargePayment", "CreateShipment", "MarkOrderCompleted"]


def run(stack: LocalStack, settings: Settings, execution_input: Any, **options: Any) -> ExecutionResult:
    return run_execution(stack, settings.region, settings.stack_name, SAGA, execution_input, **options)


def trace_of(stack: LocalStack, settings: Settings, arn: str) -> ExecutionTrace:
    return trace_execution(stack, settings.region, settings.stack_name, arn)


def test_the_stack_s_state_machine_is_found_by_logical_id_name_arn_and_alone(
    stack: LocalStack, engine_settings: Settings
):
    (machine,) = state_machines(stack, engine_settings.region, engine_settings.stack_name)
    assert machine.logical_id == SAGA and machine.arn == stack.outputs["StateMachineArn"]
    for wanted in (SAGA, machine.name, machine.arn, None):
        assert (
            resolve_state_machine(stack, engine_settings.region, engine_settings.stack_name, wanted)
            == machine
        )
    with pytest.raises(StateMachineNotFoundError) as raised:
        resolve_state_machine(stack, engine_settings.region, engine_settings.stack_name, "Nope")
    assert raised.value.hint == f"choose one of: {SAGA}"


def test_a_succeeding_execution_runs_the_happy_path_with_each_task_s_log_lines(
    stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
):
    # GIVEN the saga's input for an order of the test's own
    execution_input = saga_input()
    order_id = execution_input["order"]["orderId"]
    # WHEN it is executed directly, under the order's id
    result = run(stack, engine_settings, execution_input, name=order_id)
    # THEN it succeeded through the happy path
    assert result.is_succeeded, result
    assert (result.name, result.input) == (order_id, execution_input)
    assert result.states == HAPPY_PATH
    assert result.output["results"]["payment"]["result"]["status"] == "CHARGED"
    # AND its trace has every task, each run found in its function's logs
    trace = trace_of(stack, engine_settings, result.arn)
    assert [(state.name, state.status) for state in trace.states] == [
        (name, "SUCCEEDED") for name in HAPPY_PATH
    ]
    assert trace.catches == [] and trace.compensations == [] and trace.notes == []
    for state in trace.states:
        (attempt,) = state.attempts
        assert state.function and attempt.request_id, state
        assert any(order_id in line.raw for line in attempt.log_lines), state


def test_a_failing_step_is_caught_and_compensated_and_its_error_logged(
    stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
):
    # GIVEN an input whose order fails the payment step (a rule on the execution named after it)
    execution_input = saga_input(fail="payment")
    result = run(stack, engine_settings, execution_input, name=execution_input["order"]["orderId"])
    # THEN the execution failed, after undoing the charge (it may have landed) and the reservation
    assert result.status == "FAILED" and not result.is_succeeded
    assert result.states == [
        "ReserveInventory",
        "ChargePayment",
        "RefundPayment",
        "ReleaseInventory",
        "MarkOrderFailed",
        "OrderFailed",
    ]
    trace = trace_of(stack, engine_settings, result.arn)
    charge = next(state for state in trace.states if state.name == "ChargePayment")
    assert (charge.status, charge.error) == ("FAILED", "InjectedFault")
    assert "injected failure in payment" in str(charge.cause)
    # AND the Catch that matched, the compensations and the injected fault are in its trace
    assert [catch.to_json() for catch in trace.catches] == [
        {
            "state": "ChargePayment",
            "error": "InjectedFault",
            "matched": "States.ALL",
            "next": "RefundPayment",
        }
    ]
    assert trace.compensations == ["RefundPayment", "ReleaseInventory", "MarkOrderFailed"]
    assert [(fault["state"], fault["kind"]) for fault in trace.injected_faults] == [
        ("ChargePayment", "error")
    ]
    text = render_execution_text(trace)
    assert "Catch InjectedFault (matched States.ALL) → RefundPayment" in text
    assert "⚡ injected error (rule " in text


def test_executions_running_at_once_are_each_traced_with_their_own_runs(
    stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
):
    # GIVEN six executions started together, every other one failing its shipping step
    inputs = [saga_input(**({"fail": "shipping"} if index % 2 else {})) for index in range(6)]
    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        results = list(
            pool.map(lambda item: run(stack, engine_settings, item, name=item["order"]["orderId"]), inputs)
        )
    # THEN each ended as its input asked, and each trace holds only its own function runs
    for index, (execution_input, result) in enumerate(zip(inputs, results, strict=True)):
        order_id = execution_input["order"]["orderId"]
        assert result.status == ("FAILED" if index % 2 else "SUCCEEDED"), result
        trace = trace_of(stack, engine_settings, result.arn)
        expected = (
            ["ReserveInventory", "ChargePayment", "CreateShipment", "CancelShipment", "RefundPayment",
             "ReleaseInventory", "MarkOrderFailed", "OrderFailed"]
            if index % 2
            else HAPPY_PATH
        )  # fmt: skip
        assert [state.name for state in trace.states] == expected
        attempts = [attempt for state in trace.states for attempt in state.attempts]
        # (an attempt a rule failed before its handler ran is no function run, and says so)
        assert [(a.fault or {}).get("kind") for a in attempts if a.fault] == (["error"] if index % 2 else [])
        runs = [attempt for attempt in attempts if not attempt.fault]
        assert all(attempt.request_id for attempt in runs), render_execution_text(trace)
        assert len({attempt.request_id for attempt in runs}) == len(runs)
        for attempt in runs:
            assert any(order_id in line.raw for line in attempt.log_lines), render_execution_text(trace)


def test_a_state_machine_outside_the_stack_is_traced_too(stack: LocalStack, engine_settings: Settings):
    # GIVEN a plain state machine (not in the stack): a task that cannot run, caught, then undone
    sfn = stack.client("stepfunctions", engine_settings.region)
    definition = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": {"ok": True}, "ResultPath": "$.prepared", "Next": "Call"},
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "no-such-function", "Payload.$": "$"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Undo"}],
                "Next": "Done",
            },
            "Undo": {"Type": "Pass", "Next": "Broken"},
            "Broken": {"Type": "Fail", "Error": "CallFailed", "Cause": "the call could not be made"},
            "Done": {"Type": "Succeed"},
        },
    }
    machine = sfn.create_state_machine(
        name=f"plain-{uuid.uuid4().hex[:8]}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::000000000000:role/plain",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"id": "plain-1"}))["executionArn"]
    from sandbox.waiting import wait_until

    wait_until(
        lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING",
        timeout=30,
        what="the plain run",
    )
    # WHEN it is found by its ARN and traced
    found = find_execution(stack, engine_settings.region, engine_settings.stack_name, arn)
    trace = trace_of(stack, engine_settings, found)
    # THEN the trace names the failure, the Catch and what ran after it
    assert trace.state_machine == machine.rsplit(":", 1)[-1]
    assert [(state.name, state.status) for state in trace.states] == [
        ("Prepare", "SUCCEEDED"), ("Call", "FAILED"), ("Undo", "SUCCEEDED"), ("Broken", "FAILED"),
    ]  # fmt: skip
    assert trace.catches[0].next == "Undo" and trace.catches[0].matched == "States.ALL"
    assert trace.compensations == ["Undo"]
    assert (trace.status, trace.error) == ("FAILED", "CallFailed")


def test_executions_are_found_by_name_and_latest_and_unknown_ones_say_so(
    stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
):
    region, name = engine_settings.region, engine_settings.stack_name
    result = run(stack, engine_settings, saga_input(), name=f"named-{uuid.uuid4().hex[:8]}")
    assert find_execution(stack, region, name, result.name) == result.arn
    assert find_execution(stack, region, name, SAGA, last=True) == result.arn
    with pytest.raises(ExecutionNotFoundError, match="no execution named 'never-ran'"):
        find_execution(stack, region, name, "never-ran")


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def run_cli(engine_settings: Settings) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the `sandbox` console script against the session engine."""
    env = {
        **os.environ,
        "SANDBOX_PORT": str(engine_settings.port),
        "SANDBOX_STATE_DIR": str(engine_settings.state_dir),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    return lambda *args: run_sandbox(*args, env=env)


def test_execute_prints_the_trace_and_exits_1_when_the_execution_failed(
    run_cli: Any, saga_input: Callable[..., dict[str, Any]]
):
    # GIVEN an execution whose shipping step fails (a fault rule for this execution alone)
    result = run_cli("execute", SAGA, "--input", json.dumps(saga_input()), "--fault", "CreateShipment:error")
    # THEN the trace says what failed and what was undone, with no error line, and exit code 1
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("execution ") and f"of {SAGA}" in lines[0]
    assert any("Catch InjectedFault (matched States.ALL) → CancelShipment" in line for line in lines)
    assert any(
        line.strip().startswith("attempt 1: InjectedFault") and "injected error (rule " in line
        for line in lines
    ), result.stdout
    assert any("↩ RefundPayment" in line for line in lines)
    assert lines[-1].startswith("execution FAILED")


def test_execute_json_and_input_from_a_file_exit_0_on_success(
    run_cli: Any, saga_input: Callable[..., dict[str, Any]], tmp_path: Any
):
    event = tmp_path / "event.json"
    event.write_text(json.dumps(saga_input()))
    result = run_cli("execute", "--input", f"@{event}", "--name", f"cli-{uuid.uuid4().hex[:8]}", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "SUCCEEDED" and document["isSucceeded"] is True
    assert [state["name"] for state in document["states"]] == HAPPY_PATH
    # AND `sandbox trace NAME` finds it again by its name
    traced = run_cli("trace", document["name"], "--json")
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout)["executionArn"] == document["executionArn"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("execute", "Nope"), f"has no state machine 'Nope' hint: choose one of: {SAGA}"),
        (("execute", "--input", "{bad"), "--input is not JSON"),
        (("execute", "--input", "@/no/such/file.json"), "--input @/no/such/file.json: cannot read"),
        (("trace", "never-ran-execution"), "no execution is named never-ran-execution"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_1(run_cli: Any, args: tuple[str, ...], message: str):
    result = run_cli(*args)
    assert result.returncode == 1
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "bug" not in result.stderr


def test_trace_last_of_a_state_machine_shows_its_latest_execution(
    run_cli: Any, stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
):
    execution_input = saga_input(fail="inventory")
    result = run(stack, engine_settings, execution_input, name=execution_input["order"]["orderId"])
    traced = run_cli("trace", "--last", SAGA)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout.splitlines()[0].startswith(f"execution {result.name} of {SAGA}")
    assert "Catch InjectedFault (matched States.ALL) → ReleaseInventory" in traced.stdout
