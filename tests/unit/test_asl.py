"""The saga's state machine, checked as a graph: forward path, compensations, retries, timeouts."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from sandbox.console.forms import MAX_FLAKY
from sandbox.demo_faults import TRANSIENT_ERROR
from sandbox.engine_patches.faults import DEFAULT_ERROR
from shared.saga_history import COMPENSATION_OF

FORWARD_PATH = ["ReserveInventory", "ChargePayment", "CreateShipment", "MarkOrderCompleted"]
FORWARD_STEPS = FORWARD_PATH[:-1]
COMPENSATION_FOR = {forward: compensation for compensation, forward in COMPENSATION_OF.items()}
# Every forward step has a compensation: a step that failed uncertainly (timed out, crashed) may
# still have done its work, or do it late.
COMPENSATIONS = [COMPENSATION_FOR[step] for step in reversed(FORWARD_STEPS)]
BUSINESS_ERRORS = {"OutOfStockError", "PaymentDeclinedError"}
# The errors each step raises before doing anything: after them, there is nothing of its own to undo.
# Shipping has none: any failure of CreateShipment may have shipped.
CERTAIN_ERRORS: dict[str, list[str]] = {
    "ReserveInventory": ["OutOfStockError"],
    "ChargePayment": ["PaymentDeclinedError"],
    "CreateShipment": [],
}
FUNCTION_OF_SERVICE = {
    "inventory": "${InventoryFunctionArn}",
    "payment": "${PaymentFunctionArn}",
    "shipping": "${ShippingFunctionArn}",
}


def states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return asl["States"]


def walk_next(asl: dict[str, Any], start: str) -> list[str]:
    """The states visited from ``start`` following Next (no loops allowed)."""
    visited: list[str] = []
    name: str | None = start
    while name is not None:
        assert name in states(asl), f"{name} is named as a Next but is not a state"
        assert name not in visited, f"loop through {name}"
        visited.append(name)
        name = states(asl)[name].get("Next")
    return visited


def catcher_of(asl: dict[str, Any], state: str, error: str) -> dict[str, Any]:
    """The first Catch of ``state`` that matches ``error``, as Step Functions picks it."""
    for catcher in states(asl)[state]["Catch"]:
        if error in catcher["ErrorEquals"] or catcher["ErrorEquals"] == ["States.ALL"]:
            return dict(catcher)
    raise AssertionError(f"{state} catches no {error}")


def compensation_chain(asl: dict[str, Any], forward_step: str, error: str) -> list[str]:
    """The states a failure of ``forward_step`` with ``error`` runs before MarkOrderFailed."""
    visited = walk_next(asl, catcher_of(asl, forward_step, error)["Next"])
    assert "MarkOrderFailed" in visited, f"a failure of {forward_step} never marks the order failed"
    return visited[: visited.index("MarkOrderFailed")]


def task_states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in states(asl).items() if state["Type"] == "Task"}


def test_forward_path_runs_the_three_steps_then_marks_the_order_completed(asl: dict[str, Any]) -> None:
    # GIVEN the definition WHEN following Next from StartAt
    path = walk_next(asl, asl["StartAt"])
    # THEN the happy path is exactly the saga's forward steps, ending on MarkOrderCompleted
    assert path == FORWARD_PATH
    assert states(asl)["MarkOrderCompleted"].get("End") is True
    assert set(FORWARD_STEPS) == set(COMPENSATION_OF.values())


@pytest.mark.parametrize(
    ("failing_step", "expected"),
    [
        ("ReserveInventory", []),
        ("ChargePayment", ["ReleaseInventory"]),
    ],
)
def test_a_business_failure_compensates_the_steps_before_it_in_reverse(
    asl: dict[str, Any], failing_step: str, expected: list[str]
) -> None:
    # GIVEN the forward steps that succeeded before `failing_step`
    succeeded = FORWARD_STEPS[: FORWARD_STEPS.index(failing_step)]
    derived = [COMPENSATION_FOR[step] for step in reversed(succeeded)]
    assert CERTAIN_ERRORS[failing_step]
    for error in CERTAIN_ERRORS[failing_step]:
        # WHEN `failing_step` raises an error that means it did nothing
        visited = compensation_chain(asl, failing_step, error)
        # THEN exactly the compensations of the steps before it ran, most recent first
        assert visited == derived == expected, error


@pytest.mark.parametrize(
    ("failing_step", "expected"),
    [
        ("ReserveInventory", ["ReleaseInventory"]),
        ("ChargePayment", ["RefundPayment", "ReleaseInventory"]),
        ("CreateShipment", ["CancelShipment", "RefundPayment", "ReleaseInventory"]),
    ],
)
@pytest.mark.parametrize(
    "error",
    [
        "States.Timeout",
        "TransientStepError",
        "IdempotencyAlreadyInProgressError",
        "Lambda.Unknown",
        # What `sandbox order --fail STEP` fails the step with: a fault at the invoke boundary is
        # no business answer, so the saga undoes the failed step too.
        DEFAULT_ERROR,
    ],
)
def test_an_uncertain_failure_compensates_the_step_itself_too(
    asl: dict[str, Any], failing_step: str, expected: list[str], error: str
) -> None:
    # GIVEN the failing step and the ones that succeeded before it
    attempted = FORWARD_STEPS[: FORWARD_STEPS.index(failing_step) + 1]
    # WHEN it fails in a way that leaves its effect uncertain (it may land late)
    visited = compensation_chain(asl, failing_step, error)
    # THEN its own compensation runs first, then its predecessors', most recent first
    assert visited == [COMPENSATION_FOR[step] for step in reversed(attempted)] == expected


@pytest.mark.parametrize("step", FORWARD_STEPS)
def test_only_errors_raised_before_any_work_skip_the_steps_own_compensation(
    asl: dict[str, Any], step: str
) -> None:
    # The certain list is the step's business errors, nothing broader: an error that can follow
    # the step's work must reach the States.ALL catcher, which compensates the step itself.
    *certain, last = states(asl)[step]["Catch"]
    assert [error for catcher in certain for error in catcher["ErrorEquals"]] == CERTAIN_ERRORS[step]
    assert set(CERTAIN_ERRORS[step]) <= BUSINESS_ERRORS
    assert last["ErrorEquals"] == ["States.ALL"]


def test_the_definition_names_no_fault(project_dir: Any) -> None:
    # Faults are injected at the invoke boundary: the saga deployed to AWS knows nothing of them
    text = (project_dir / "state_machines" / "order_saga.asl.json").read_text()
    assert "Injected" not in text
    assert "fault" not in text.lower()


def test_mark_order_failed_ends_the_execution_failed(asl: dict[str, Any]) -> None:
    after = walk_next(asl, "MarkOrderFailed")
    assert len(after) == 2
    assert states(asl)[after[1]]["Type"] == "Fail"


def test_every_forward_step_catches_everything_into_error(asl: dict[str, Any]) -> None:
    # MarkOrderFailed reads $.error: every Catch must put the error there and keep the input
    assert "$.error" in str(states(asl)["MarkOrderFailed"]["Parameters"])
    for step in FORWARD_STEPS:
        catchers = states(asl)[step]["Catch"]
        assert catchers[-1]["ErrorEquals"] == ["States.ALL"], step
        assert all(catcher["ResultPath"] == "$.error" for catcher in catchers), step


def test_compensations_and_mark_order_failed_catch_nothing(asl: dict[str, Any]) -> None:
    # A compensation that could be caught would skip the rest of the chain silently
    for name in [*COMPENSATIONS, "MarkOrderFailed"]:
        assert "Catch" not in states(asl)[name], name


def test_an_order_already_failed_at_mark_completed_is_compensated_in_full(asl: dict[str, Any]) -> None:
    # GIVEN a replay of a FAILED order whose forward steps ran again (their business failure left
    # no idempotency record), so MarkOrderCompleted meets FAILED and refuses to move it back
    (catcher,) = states(asl)["MarkOrderCompleted"]["Catch"]
    assert catcher["ErrorEquals"] == ["InvalidTransitionError"]
    # THEN that refusal is not retried, and every forward step is undone before MarkOrderFailed
    first_retrier = states(asl)["MarkOrderCompleted"]["Retry"][0]
    assert first_retrier == {"ErrorEquals": ["InvalidTransitionError"], "MaxAttempts": 0}
    visited = walk_next(asl, catcher["Next"])
    assert visited[: visited.index("MarkOrderFailed")] == COMPENSATIONS


@pytest.mark.parametrize("step", FORWARD_STEPS)
def test_forward_steps_retry_only_transient_errors(asl: dict[str, Any], step: str) -> None:
    retriers = states(asl)[step]["Retry"]
    retried = {error for retrier in retriers for error in retrier["ErrorEquals"]}
    # THEN business errors are final (never retried), and nothing retries everything
    assert not retried & BUSINESS_ERRORS
    assert "States.ALL" not in retried
    assert "States.TaskFailed" not in retried
    # AND the transient error retries with exponential backoff and full jitter
    (transient,) = [r for r in retriers if "TransientStepError" in r["ErrorEquals"]]
    assert transient["JitterStrategy"] == "FULL"
    assert transient["BackoffRate"] > 1
    assert transient["MaxAttempts"] >= 1


def test_forward_retry_budget_covers_the_largest_flaky_fault(asl: dict[str, Any]) -> None:
    # GIVEN the largest flaky count the console accepts, and the error a flaky attempt fails with
    # THEN every forward step retries that error at least that many times, so a flaky order still
    # completes
    for step in FORWARD_STEPS:
        (retrier,) = [r for r in states(asl)[step]["Retry"] if TRANSIENT_ERROR in r["ErrorEquals"]]
        assert retrier["MaxAttempts"] >= MAX_FLAKY, step


@pytest.mark.parametrize("name", [*COMPENSATIONS, "MarkOrderCompleted", "MarkOrderFailed"])
def test_compensations_and_mark_states_retry(asl: dict[str, Any], name: str) -> None:
    retriers = states(asl)[name].get("Retry")
    assert retriers, f"{name} has no Retry"
    # Every error but a refused status change (final by nature) is retried
    retried = [r for r in retriers if r["ErrorEquals"] != ["InvalidTransitionError"]]
    assert retried[-1]["ErrorEquals"] == ["States.ALL"]
    assert all(retrier.get("MaxAttempts", 3) >= 1 for retrier in retried)


def test_only_the_needed_compensations_exist(asl: dict[str, Any]) -> None:
    compensation_states = [
        name for name, state in states(asl).items() if "Compensation of" in state.get("Comment", "")
    ]
    assert sorted(compensation_states) == sorted(COMPENSATIONS)
    for name in compensation_states:
        assert states(asl)[name]["Comment"] == f"Compensation of {COMPENSATION_OF[name]}"


def test_every_task_has_a_timeout(asl: dict[str, Any]) -> None:
    tasks = task_states(asl)
    assert set(tasks) == {*FORWARD_PATH, *COMPENSATIONS, "MarkOrderFailed"}
    for name, state in tasks.items():
        timeout = state.get("TimeoutSeconds")
        assert isinstance(timeout, int), name
        assert timeout > 0, name


def test_every_state_is_reachable(asl: dict[str, Any]) -> None:
    reachable: set[str] = set()
    pending = [asl["StartAt"]]
    while pending:
        name = pending.pop()
        if name in reachable:
            continue
        reachable.add(name)
        state = states(asl)[name]
        pending += [state["Next"]] if "Next" in state else []
        pending += [catcher["Next"] for catcher in state.get("Catch", [])]
    assert reachable == set(states(asl))


def test_compensation_calls_the_function_of_the_step_it_undoes(asl: dict[str, Any]) -> None:
    for compensation in COMPENSATIONS:
        forward = COMPENSATION_OF[compensation]
        compensate_fn = states(asl)[compensation]["Parameters"]["FunctionName"]
        forward_fn = states(asl)[forward]["Parameters"]["FunctionName"]
        assert compensate_fn == forward_fn, compensation


def test_every_substitution_is_defined_by_the_template(
    asl: dict[str, Any], template: dict[str, Any], project_dir: Any
) -> None:
    # GIVEN the template's state machine that uses this definition
    (machine,) = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::StateMachine"
    ]
    assert machine["DefinitionUri"] == "state_machines/order_saga.asl.json"
    definition_text = (project_dir / machine["DefinitionUri"]).read_text()
    # WHEN collecting every ${...} of the definition
    used = set(re.findall(r"\$\{([^}]*)\}", definition_text))
    # THEN each one is substituted (a missing one deploys a literal "${X}" ARN)
    assert used, "the definition names no functions?"
    assert used <= set(machine["DefinitionSubstitutions"])


def test_each_task_action_is_served_by_the_function_it_invokes(
    asl: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the step functions' action tables (importing a handler builds its idempotency layer)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")
    handlers = {
        function: importlib.import_module(f"{service}.handler")
        for service, function in FUNCTION_OF_SERVICE.items()
    }
    for name, state in task_states(asl).items():
        payload = state["Parameters"]["Payload"]
        function = state["Parameters"]["FunctionName"]
        if function not in handlers:
            continue
        # THEN the action exists on that function and serves exactly this state
        action = handlers[function].ACTIONS.get(payload["action"])
        assert action is not None, f"{name}: {function} has no action {payload['action']!r}"
        assert action.step == name
        assert payload.get("retryCount.$") == "$$.State.RetryCount"
