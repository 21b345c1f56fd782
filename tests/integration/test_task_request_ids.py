"""A lambda:invoke Task's result carries its invocation's request id, as on AWS: the id of the
function's own START line, which `sandbox trace` uses to give each attempt exactly its lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.executions import ExecutionResult, run_execution
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.trace import render_execution_text, trace_execution

pytestmark = pytest.mark.integration
SAGA = "OrderSagaStateMachine"  # the demo saga's logical id in template.yaml


def task_results(stack: LocalStack, settings: Settings, arn: str) -> dict[str, dict[str, Any]]:
    """Each Task state's last TaskSucceeded output or TaskFailed details, by state name."""
    sfn = stack.client("stepfunctions", settings.region)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    results: dict[str, dict[str, Any]] = {}
    state = ""
    for event in events:
        if event["type"] == "TaskStateEntered":
            state = event["stateEnteredEventDetails"]["name"]
        elif event["type"] == "TaskSucceeded":
            results[state] = json.loads(event["taskSucceededEventDetails"]["output"])
        elif event["type"] == "TaskFailed":
            results[state] = dict(event["taskFailedEventDetails"])
    return results


def start_lines(stack: LocalStack, settings: Settings, function: str) -> dict[str, str]:
    """The log stream of each `START RequestId: <id>` line in the function's log group, by id."""
    logs = stack.client("logs", settings.region)
    found: dict[str, str] = {}
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{function}"):
        for event in page["events"]:
            message = str(event["message"])
            if message.startswith("START RequestId: "):
                found[message.split()[2]] = str(event["logStreamName"])
    return found


def test_each_task_result_names_the_invocation_whose_lines_the_trace_attaches(
    stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN two executions of the demo's saga running at once, the second failing its payment step
    inputs = [saga_input(), saga_input(fail="payment")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results: list[ExecutionResult] = list(
            pool.map(
                lambda item: run_execution(
                    stack,
                    engine_settings.region,
                    engine_settings.stack_name,
                    SAGA,
                    item,
                    name=item["order"]["orderId"],  # the execution the payment's fault rule is for
                ),
                inputs,
            )
        )
    assert [result.status for result in results] == ["SUCCEEDED", "FAILED"], results
    order_ids = [item["order"]["orderId"] for item in inputs]
    seen: set[str] = set()
    for execution_input, result in zip(inputs, results, strict=True):
        order_id = execution_input["order"]["orderId"]
        other_id = next(other for other in order_ids if other != order_id)
        trace = trace_execution(stack, engine_settings.region, engine_settings.stack_name, result.arn)
        reserve = next(state for state in trace.states if state.name == "ReserveInventory")
        assert reserve.function, render_execution_text(trace)
        # WHEN the Task's own result is read from the execution's history
        output = task_results(stack, engine_settings, result.arn)["ReserveInventory"]
        request_id = output["SdkResponseMetadata"]["RequestId"]
        # THEN it is AWS's response, the payload where the saga's ResultSelector takes it from
        assert output["StatusCode"] == 200 and output["ExecutedVersion"] == "$LATEST"
        assert output["SdkHttpMetadata"]["HttpHeaders"]["x-amzn-RequestId"] == request_id
        if result.is_succeeded:
            assert result.output["results"]["inventory"] == {"result": output["Payload"]}
        # AND its request id is the one of the function's START line
        assert request_id in start_lines(stack, engine_settings, reserve.function)
        # AND the trace gives that attempt exactly that invocation's lines: this order's, not the other's
        (attempt,) = reserve.attempts
        assert attempt.request_id == request_id
        assert attempt.log_lines and {line.request_id for line in attempt.log_lines} <= {request_id, None}
        assert any(line.raw.startswith(f"START RequestId: {request_id}") for line in attempt.log_lines)
        assert any(order_id in line.raw for line in attempt.log_lines), render_execution_text(trace)
        assert not any(other_id in line.raw for line in attempt.log_lines), render_execution_text(trace)
        seen.add(request_id)
    assert len(seen) == 2


def test_a_failed_python_task_names_its_request_in_the_cause_as_aws_does(
    stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN an execution whose payment step raises in its Python handler: a charge over the card limit
    execution_input = saga_input()
    execution_input["order"]["totalAmount"] = "12000.00"
    result = run_execution(stack, engine_settings.region, engine_settings.stack_name, SAGA, execution_input)
    trace = trace_execution(stack, engine_settings.region, engine_settings.stack_name, result.arn)
    charge = next(state for state in trace.states if state.name == "ChargePayment")
    # WHEN its TaskFailed is read
    failed = task_results(stack, engine_settings, result.arn)["ChargePayment"]
    cause = json.loads(failed["cause"])
    # THEN its cause is the Python runtime's error payload, naming the request that failed
    assert list(cause)[:4] == ["errorMessage", "errorType", "requestId", "stackTrace"], cause
    assert cause["errorType"] == failed["error"] == "PaymentDeclinedError"
    assert charge.function and cause["requestId"] in start_lines(stack, engine_settings, charge.function)
