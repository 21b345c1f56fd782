"""The saga clock (`sandbox up --time-scale N`): the same saga, N times faster, with the same history.

The two runs are compared by their histories (equal, event for event, without timestamps) and by
the ratio of their measured durations, with a generous bound: a hanging step at 10x must take at
most a quarter of its time at 1x (a tenth in theory). A bound on a ratio holds on two busy cores
where a bound in seconds would flake: the 1x run is about 27 s of timeouts and retry backoff, so
even a second of scheduling noise in the 10x run moves the ratio from 10 to about 7.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.engine.clock import read_engine_clock
from sandbox.saga import executions_of
from sandbox.testing import OrderResult, SandboxStack

pytestmark = pytest.mark.integration


def history_of(sandbox_stack: SandboxStack, order_id: str) -> tuple[list[tuple[Any, ...]], float]:
    """The saga's history without its clock (each event's type, state and error) and its duration."""
    region = sandbox_stack.settings.region
    sfn = sandbox_stack.stack.client("stepfunctions", region)
    (execution,) = executions_of(sandbox_stack.stack, region, order_id)
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    shape = []
    for event in events:
        details = next((value for key, value in event.items() if key.endswith("EventDetails")), {})
        shape.append((event["type"], details.get("name"), details.get("error"), details.get("cause")))
    return shape, (described["stopDate"] - described["startDate"]).total_seconds()


def test_a_hanging_step_at_10x_plays_out_in_a_tenth_of_the_time_with_the_same_history(
    sandbox_stack: SandboxStack, sandbox_clock: Any, place_order: Any
) -> None:
    # GIVEN the same order with its payment hanging on every attempt, at 1x and then at 10x
    sandbox_clock(1)
    slow: OrderResult = place_order(hang="payment")
    sandbox_clock(10)
    fast: OrderResult = place_order(hang="payment")
    # WHEN their sagas' histories are read
    slow_history, slow_seconds = history_of(sandbox_stack, slow.order_id)
    fast_history, fast_seconds = history_of(sandbox_stack, fast.order_id)
    # THEN both failed the same way: same states, same attempts, same errors and causes
    assert slow.status == fast.status == "FAILED"
    assert fast_history == slow_history
    timeouts = [event for event in fast_history if event[0] == "TaskFailed" and event[2] == "States.Timeout"]
    assert len(timeouts) == 4, json.dumps(fast_history)  # the first attempt and its three retries
    assert {event[3] for event in timeouts} == {"Task timed out after 5 seconds"}  # as written, at any scale
    # AND the fast one took about a tenth of the time (at most a quarter, on any machine)
    assert slow_seconds > 20  # four 5 s timeouts and the backoff between them, in real time
    assert fast_seconds <= slow_seconds / 4, (slow_seconds, fast_seconds)
    # AND its trace shows the scale and both clocks
    clock = fast.trace.to_json()["clock"]
    assert clock["timeScale"] == 10.0 and clock["sagaMs"] == clock["wallMs"] * 10
    assert any(note.startswith("saga clock 10x:") for note in fast.trace.notes), fast.trace.notes


def test_the_engine_reports_its_clock_and_the_fixture_puts_it_back(
    sandbox_stack: SandboxStack, sandbox_clock: Any
) -> None:
    # GIVEN the session engine's clock
    endpoint = sandbox_stack.stack.engine.endpoint_url
    before = read_engine_clock(endpoint)
    assert before is not None
    # WHEN a test runs it at max THEN the engine reports it, with the budgets' floor
    clock = sandbox_clock("max")
    assert clock.to_json()["timeScale"] == "max" and clock.wait_scale == 0.0
    assert clock.budget_floor_seconds == 0.5
    again = read_engine_clock(endpoint)
    assert again is not None and again.to_json()["timeScale"] == "max"
