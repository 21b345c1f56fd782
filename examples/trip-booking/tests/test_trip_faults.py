"""The trip saga broken on purpose: every step with every fault kind, at once, then a chaos run.

The faults are rules at the engine's Lambda invoke boundary (the plugin's ``execute(...,
faults=[...])`` scopes them to one execution, ``sandbox_faults`` to one test): the handlers are
unchanged. What must hold is the saga's promise: a trip either holds its flight, hotel and one
charge, or nothing at all.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
import trip_chaos

from sandbox.faults import FaultSpec
from sandbox.saga_chaos import ChaosContext, ChaosExecution, SagaChaosConfig
from sandbox.testing import assert_compensated, assert_failed, assert_states, assert_succeeded

pytestmark = pytest.mark.integration

STEPS = ("ReserveFlight", "ReserveHotel", "ChargeCard")
# The states a failure of each step runs after its Catch when the saga cannot tell whether the step
# landed (States.ALL): the step's own compensation, those of the steps before it in reverse, then
# the failure notice.
UNCERTAIN = {
    "ReserveFlight": ["CancelFlight", "NotifyTripFailed"],
    "ReserveHotel": ["CancelHotel", "CancelFlight", "NotifyTripFailed"],
    "ChargeCard": ["RefundCard", "CancelHotel", "CancelFlight", "NotifyTripFailed"],
}
FORWARD = {
    "ReserveFlight": [],
    "ReserveHotel": ["ReserveFlight"],
    "ChargeCard": ["ReserveFlight", "ReserveHotel"],
}
# Every kind a Lambda task can take, and how the trip must end: failed and compensated, or
# booked after the step's Retry (the attempts it took).
CASES = [
    ("error", "", "failed"),
    ("error-after", "", "failed"),
    ("crash", "", "failed"),
    ("error", ":1-2", "retried"),  # with Lambda.ServiceException: the Retry runs it a third time
    ("throttle", ":1", "retried"),
    ("timeout", ":1", "retried"),
    ("delay=300", "", "booked"),
]


def new_trip() -> dict[str, Any]:
    return {**trip_chaos.trips(0), "tripId": f"trip-{uuid.uuid4().hex[:12]}"}


def run_case(sandbox_stack, step: str, kind: str, attempts: str) -> Any:
    fault = FaultSpec.parse_flag(f"{step}:{kind}{attempts}")
    if kind == "error" and attempts:  # a transient error of the Lambda service: the step's Retry names it
        fault = replace(fault, error="Lambda.ServiceException")
    trip = new_trip()
    return trip, sandbox_stack.execute(sandbox_stack.outputs["BookingSagaArn"], trip, faults=[fault])


# The longest tests come first and apart, so that `make test` (two workers, tests handed out in
# file order) starts them at once: the chaos run, then the every-kind run after the quick one.
def test_a_chaos_run_of_three_hundred_trips_keeps_every_invariant(sandbox_stack):
    # GIVEN 300 trips of every kind, most of them given a random fault on a Lambda task
    config = SagaChaosConfig(executions=300, concurrency=8, seed=22)
    # WHEN they run under chaos
    report = sandbox_stack.chaos(
        "BookingSaga", inputs=trip_chaos.trips, invariants=trip_chaos.INVARIANTS, config=config
    )
    # THEN every check held: each ended, each Catch took a predicted path, each fault shows, and the
    # trip's own invariants
    broken = {check.name: check.violations[:5] for check in report.checks if not check.is_held}
    assert report.is_held, broken
    assert sum(report.injected_by_kind().values()) > 100
    assert set(report.injected_by_kind()) == {"error", "error-after", "throttle", "delay", "timeout"}


def test_an_answer_lost_after_the_card_was_charged_is_refunded(sandbox_stack, sandbox_faults):
    # GIVEN a rule for this test: the card function's answer is lost after it charged the card
    trip = new_trip()
    sandbox_faults.add("ChargeCardFunction", "error-after", execution=trip["tripId"], error="Lambda.Unknown")
    # WHEN the trip is booked
    execution = sandbox_stack.execute(sandbox_stack.outputs["BookingSagaArn"], trip, name=trip["tripId"])
    # THEN the charge landed, the saga could not know, and it refunded it before releasing the rest
    assert_failed(execution, "Lambda.Unknown")
    assert_states(
        execution,
        ["ReserveFlight", "ReserveHotel", "ChargeCard", "RefundCard", "CancelHotel", "CancelFlight",
         "NotifyTripFailed", "TripFailed"],
    )  # fmt: skip
    charge = sandbox_stack.client("dynamodb").get_item(
        TableName=sandbox_stack.outputs["PaymentsTableName"], Key={"tripId": {"S": trip["tripId"]}},
        ConsistentRead=True,
    )["Item"]  # fmt: skip
    assert charge["status"]["S"] == "REFUNDED"
    assert [fault["kind"] for fault in sandbox_faults.injections(trip["tripId"])] == ["error-after"]


def test_every_step_broken_with_every_kind_at_once_ends_as_the_saga_promises(sandbox_stack):
    # GIVEN each saga step with each fault kind: 21 executions, each with its own rule
    cases = [(step, kind, attempts, outcome) for step in STEPS for kind, attempts, outcome in CASES]
    # WHEN they all run at the same time
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = list(pool.map(lambda case: run_case(sandbox_stack, *case[:3]), cases))
    # THEN each ended as its fault implies, and the engine marked the fault where it injected it
    for (step, kind, _attempts, outcome), (_trip, execution) in zip(cases, runs, strict=True):
        injected = [(fault["state"], fault["kind"]) for fault in execution.injected_faults]
        assert (step, kind.split("=")[0]) in injected, execution.trace_text
        if outcome == "failed":
            assert_failed(execution, {"crash": "Runtime.ExitError"}.get(kind, "InjectedFault"))
            assert_compensated(execution, UNCERTAIN[step])
        else:
            assert_succeeded(execution)
            tries = {"retried": 3 if kind == "error" else 2, "booked": 1}[outcome]
            assert execution.attempts[step] == tries, execution.trace_text
            assert_compensated(execution, [])
    # AND the saga's promise holds for every trip: all of it, or nothing
    context = ChaosContext(sandbox_stack.stack, sandbox_stack.region, sandbox_stack.outputs, tuple(
        ChaosExecution(e.name, e.arn, trip, e.status, e.output, e.error, e.cause, tuple(e.states), (), (), e.trace)
        for trip, e in runs
    ))  # fmt: skip
    assert trip_chaos.booked_trips_hold_everything(context) == []
    assert trip_chaos.nothing_held_after_a_failure(context) == []
