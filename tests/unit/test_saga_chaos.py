"""Chaos for any saga, without an engine: the plan, the inputs, and each check on executions made by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import UsageError
from sandbox.faults import Attempts
from sandbox.saga_chaos import (
    ChaosContext,
    ChaosExecution,
    SagaChaosConfig,
    check_ended,
    check_failure_paths,
    check_injections,
    check_invariant,
    fault_targets,
    load_invariants,
    plan_saga_chaos,
    read_inputs,
)
from sandbox.saga_map import build_saga_map
from sandbox.trace.execution import Attempt, CatchRoute, ExecutionTrace, StateVisit

TRIP_ASL = json.loads(
    (Path(__file__).resolve().parents[2] / "examples/trip-booking/statemachine/booking.asl.json").read_text()
)
AT = datetime(2026, 12, 5, tzinfo=UTC)


def lambda_task(next_state: str | None = None, **extra: Any) -> dict[str, Any]:
    state = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
             "Parameters": {"FunctionName": "${Fn}", "Payload.$": "$"}, **extra}  # fmt: skip
    return {**state, "Next": next_state} if next_state else {**state, "End": True}


SAGA = {
    "StartAt": "Book",
    "States": {
        "Book": lambda_task("Pay", Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Unbook"}]),
        "Pay": lambda_task(
            "Done", TimeoutSeconds=5, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Refund"}]
        ),
        "Done": {"Type": "Succeed"},
        "Refund": lambda_task("Unbook", Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}]),
        "Unbook": lambda_task("Failed", Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}]),
        "Failed": {"Type": "Fail", "Error": "Failed"},
        "Notify": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "End": True},
    },
}


def visit(name: str, *attempts: tuple[str, str | None], catch: str | None = None) -> StateVisit:
    tries = tuple(Attempt(n, AT, AT, status, error) for n, (status, error) in enumerate(attempts, start=1))
    route = CatchRoute(name, tries[-1].error, "States.ALL", catch) if catch else None
    failed = bool(tries) and tries[-1].status != "SUCCEEDED"
    return StateVisit(name, "Task", AT, AT, "FAILED" if failed else "SUCCEEDED", attempts=tries, catch=route)


def execution(
    states: list[StateVisit], *, status: str = "FAILED", injected: tuple[dict[str, Any], ...] = ()
) -> ChaosExecution:
    trace = ExecutionTrace("arn:x", "chaos-1", "Saga", status, AT, AT, states)
    return ChaosExecution(
        "chaos-1", "arn:x", {}, status, None, None, None, tuple(s.name for s in states), (), injected, trace
    )


def test_the_same_seed_plans_the_same_run_and_faults_land_on_lambda_tasks_only():
    # GIVEN the trip saga and a seed
    config = SagaChaosConfig(executions=200, seed=5)
    first = plan_saga_chaos(TRIP_ASL, lambda i: {"i": i}, config, "run")
    again = plan_saga_chaos(TRIP_ASL, lambda i: {"i": i}, config, "run")
    # THEN the plan is the same twice, each execution named by the run, its input its own
    assert first == again
    assert [p.name for p in first[:2]] == ["chaos-run-00000", "chaos-run-00001"] and first[7].input == {
        "i": 7
    }
    # AND faults land on the Lambda tasks (never the SNS notices), every kind drawn
    targets = {spec.target for p in first for spec in p.faults}
    assert targets <= set(fault_targets(TRIP_ASL)) and "NotifyTripBooked" not in targets
    assert {spec.kind for p in first for spec in p.faults} == {
        "error",
        "error-after",
        "throttle",
        "delay",
        "timeout",
    }
    # AND about the share asked for is broken
    assert 100 <= sum(1 for p in first if p.faults) <= 140


def test_a_compensation_only_gets_faults_it_can_retry_through():
    plan = plan_saga_chaos(SAGA, lambda i: {}, SagaChaosConfig(executions=400, seed=3), "r")
    # (a delay breaks nothing: it may come on every attempt)
    compensations = [
        spec
        for p in plan
        for spec in p.faults
        if spec.target in ("Refund", "Unbook") and spec.kind != "delay"
    ]
    assert compensations
    for spec in compensations:
        assert spec.attempts.last is not None and spec.attempts.last <= 2, spec
        if spec.kind in ("error", "error-after"):
            assert spec.error == "Lambda.ServiceException"


def test_a_config_it_cannot_run_is_refused():
    with pytest.raises(UsageError, match="unknown boom"):
        plan_saga_chaos(SAGA, lambda i: {}, SagaChaosConfig(kinds=("boom",)), "r")
    with pytest.raises(UsageError, match="no Task that invokes a Lambda"):
        plan_saga_chaos({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}, lambda i: {},
                        SagaChaosConfig(), "r")  # fmt: skip
    assert all(not p.faults for p in plan_saga_chaos(SAGA, lambda i: {}, SagaChaosConfig(fault_share=0), "r"))


def test_inputs_come_from_a_json_lines_file_in_turn_or_a_function(tmp_path: Path):
    lines = tmp_path / "inputs.jsonl"
    lines.write_text('{"a": 1}\n\n{"a": 2}\n')
    read = read_inputs(str(lines), [tmp_path])
    assert [read(i) for i in range(3)] == [{"a": 1}, {"a": 2}, {"a": 1}]
    (tmp_path / "my_inputs.py").write_text(
        "def make(index):\n    return {'n': index * 2}\n\ndef broken(context):\n    raise KeyError('x')\n"
    )
    assert read_inputs("my_inputs:make", [tmp_path])(4) == {"n": 8}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(UsageError, match="line 2: not JSON"):
        read_inputs(str(bad), [tmp_path])
    with pytest.raises(UsageError, match="has no function nope"):
        load_invariants(["my_inputs:nope"], [tmp_path])
    with pytest.raises(UsageError, match="expected module:function"):
        read_inputs("just-a-name", [tmp_path])


def test_an_execution_still_running_breaks_the_ended_check():
    assert check_ended([execution([], status="SUCCEEDED")]).is_held
    check = check_ended([execution([], status="RUNNING")])
    assert check.violations == ("chaos-1: still RUNNING",)


def test_after_a_catch_the_map_s_path_must_have_run():
    saga = build_saga_map(SAGA)
    # GIVEN a payment that failed and was caught: the map predicts Refund, Unbook, Failed
    caught = visit("Pay", ("FAILED", "InjectedFault"), catch="Refund")
    right = execution([visit("Book", ("SUCCEEDED", None)), caught, visit("Refund", ("SUCCEEDED", None)),
                       visit("Unbook", ("SUCCEEDED", None))])  # fmt: skip
    wrong = execution([visit("Book", ("SUCCEEDED", None)), caught, visit("Unbook", ("SUCCEEDED", None))])
    # THEN the path that ran is accepted, and one that skipped the refund is named
    assert check_failure_paths(saga, [right]).is_held
    (violation,) = check_failure_paths(saga, [wrong]).violations
    assert violation.startswith("chaos-1: after Pay's Catch ran Unbook; the map predicts Refund → Unbook")


def test_each_injection_must_show_where_it_was_injected():
    injected = ({"state": "Pay", "attempt": 1, "kind": "error", "error": None},)
    shown = execution([visit("Pay", ("FAILED", "InjectedFault"), ("SUCCEEDED", None))], status="SUCCEEDED",
                      injected=injected)  # fmt: skip
    assert check_injections([shown], SAGA).is_held
    # a timeout of a task with TimeoutSeconds shows as States.Timeout, not as the error it was not
    timed = ({"state": "Pay", "attempt": 1, "kind": "timeout", "error": None},)
    other = execution([visit("Pay", ("FAILED", "InjectedFault"), ("SUCCEEDED", None))], injected=timed)
    assert check_injections([other], SAGA).violations == (
        "chaos-1: timeout injected into Pay attempt 1, which ended InjectedFault, not States.Timeout",
    )
    missing = execution([visit("Pay", ("SUCCEEDED", None))], injected=({**injected[0], "attempt": 2},))
    assert "which the history lacks" in check_injections([missing], SAGA).violations[0]


def test_a_users_invariant_reports_its_violations_and_its_own_failure():
    context = ChaosContext(None, "us-east-1", {}, (execution([], status="SUCCEEDED"),))  # type: ignore[arg-type]
    assert check_invariant("ok", lambda ctx: [], context).is_held
    assert check_invariant(
        "held", lambda ctx: [f"{e.name}: bad" for e in ctx.executions], context
    ).violations == ("chaos-1: bad",)

    def broken(ctx: ChaosContext) -> list[str]:
        raise KeyError("FlightsTableName")

    assert check_invariant("broken", broken, context).violations == (
        "the invariant raised KeyError: 'FlightsTableName'",
    )


def test_attempts_on_a_plan_are_the_user_side_model():
    plan = plan_saga_chaos(
        SAGA, lambda i: {}, SagaChaosConfig(executions=50, seed=1, kinds=("timeout",)), "r"
    )
    assert {spec.attempts for p in plan for spec in p.faults} == {Attempts(1, 1)}
