"""Execution history -> saga steps, as the CLI and the GET /orders/{id} response show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.saga_history import compensations_run, summarize_steps

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class History:
    """Builds a Step Functions history the way the API returns it (ids from 1, one clock)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.clock = T0

    def add(self, kind: str, after_ms: int = 0, **details: Any) -> History:
        self.clock += timedelta(milliseconds=after_ms)
        self.events.append({"id": len(self.events) + 1, "type": kind, "timestamp": self.clock, **details})
        return self

    def entered(self, name: str, after_ms: int = 0) -> History:
        return self.add("TaskStateEntered", after_ms, stateEnteredEventDetails={"name": name})

    def scheduled(self, after_ms: int = 0) -> History:
        return self.add("TaskScheduled", after_ms)

    def failed(self, error: str, after_ms: int = 0) -> History:
        return self.add("TaskFailed", after_ms, taskFailedEventDetails={"error": error, "cause": "{}"})

    def timed_out(self, after_ms: int = 0) -> History:
        return self.add("TaskTimedOut", after_ms, taskTimedOutEventDetails={"error": "States.Timeout"})

    def succeeded(self, after_ms: int = 0) -> History:
        return self.add("TaskSucceeded", after_ms)

    def exited(self, name: str, after_ms: int = 0) -> History:
        return self.add("TaskStateExited", after_ms, stateExitedEventDetails={"name": name})

    def step_ok(self, name: str, ms: int) -> History:
        return self.entered(name).scheduled().succeeded(ms).exited(name)


def payment_failed_history() -> list[dict[str, Any]]:
    """Inventory reserved; payment flaky twice then declined for good; inventory released."""
    history = History().add("ExecutionStarted")
    history.step_ok("ReserveInventory", 120)
    history.entered("ChargePayment", 5).scheduled()
    history.failed("TransientStepError", 10).scheduled(20).failed("TransientStepError", 10)
    history.scheduled(40).failed("PaymentDeclinedError", 10).exited("ChargePayment", 1)
    history.step_ok("ReleaseInventory", 30)
    history.step_ok("MarkOrderFailed", 15)
    history.add("FailStateEntered", stateEnteredEventDetails={"name": "OrderFailed"})
    history.add("ExecutionFailed")
    return history.events


def by_name(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in steps}


def test_steps_are_listed_in_the_order_they_ran() -> None:
    steps = summarize_steps(payment_failed_history())
    assert [step["name"] for step in steps] == [
        "ReserveInventory",
        "ChargePayment",
        "ReleaseInventory",
        "MarkOrderFailed",
    ]


def test_a_caught_step_is_failed_with_every_attempts_error() -> None:
    # GIVEN ChargePayment: two transient failures then a business error it could not retry
    step = by_name(summarize_steps(payment_failed_history()))["ChargePayment"]
    # THEN it counts three attempts, lists each error in order, and ended FAILED
    assert step["status"] == "FAILED"
    assert step["attempts"] == 3
    assert step["errors"] == ["TransientStepError", "TransientStepError", "PaymentDeclinedError"]
    assert step["isCompensation"] is False


def test_a_retried_then_successful_step_is_succeeded_with_its_errors() -> None:
    history = History().entered("CreateShipment").scheduled().failed("TransientStepError", 5)
    history.scheduled(10).timed_out(10).scheduled(10).succeeded(7).exited("CreateShipment", 1)
    (step,) = summarize_steps(history.events)
    assert step["status"] == "SUCCEEDED"
    assert step["attempts"] == 3
    assert step["errors"] == ["TransientStepError", "States.Timeout"]


def test_durations_are_milliseconds_from_entered_to_exited() -> None:
    steps = by_name(summarize_steps(payment_failed_history()))
    assert steps["ReserveInventory"]["durationMs"] == 120
    # 10 + 20 + 10 + 40 + 10 + 1 ms between ChargePayment's entered and exited events
    assert steps["ChargePayment"]["durationMs"] == 91
    assert steps["ReleaseInventory"]["durationMs"] == 30
    assert all(isinstance(step["durationMs"], int) for step in steps.values())


def test_compensations_are_flagged_and_listed_in_the_order_they_ran() -> None:
    history = History()
    for name in ("ReserveInventory", "ChargePayment"):
        history.step_ok(name, 10)
    history.entered("CreateShipment").scheduled().failed("InjectedFault", 3).exited("CreateShipment")
    for name in ("CancelShipment", "RefundPayment", "ReleaseInventory", "MarkOrderFailed"):
        history.step_ok(name, 10)
    steps = summarize_steps(history.events)
    flags = {step["name"]: step["isCompensation"] for step in steps}
    assert flags == {
        "ReserveInventory": False,
        "ChargePayment": False,
        "CreateShipment": False,
        "CancelShipment": True,
        "RefundPayment": True,
        "ReleaseInventory": True,
        "MarkOrderFailed": False,
    }
    assert compensations_run(steps) == ["CancelShipment", "RefundPayment", "ReleaseInventory"]


def test_no_compensations_on_the_happy_path() -> None:
    history = History()
    for name in ("ReserveInventory", "ChargePayment", "CreateShipment", "MarkOrderCompleted"):
        history.step_ok(name, 10)
    steps = summarize_steps(history.events)
    assert compensations_run(steps) == []
    assert {step["status"] for step in steps} == {"SUCCEEDED"}
    assert all(step["attempts"] == 1 and step["errors"] == [] for step in steps)


def test_events_are_ordered_by_id_not_by_list_position() -> None:
    events = payment_failed_history()
    shuffled = list(reversed(events))
    # ids as strings too, as some engines return them
    for event in shuffled:
        event["id"] = str(event["id"])
    assert summarize_steps(shuffled) == summarize_steps(payment_failed_history())


def test_iso_timestamps_are_accepted() -> None:
    events = History().step_ok("ReserveInventory", 250).events
    for event in events:
        event["timestamp"] = event["timestamp"].isoformat()
    (step,) = summarize_steps(events)
    assert step["durationMs"] == 250


def test_a_step_still_running_has_no_duration() -> None:
    # GIVEN a step that failed once and is waiting for its retry
    events = History().entered("ChargePayment").scheduled().failed("TransientStepError", 5).events
    (step,) = summarize_steps(events)
    assert step["status"] == "RETRYING"
    assert step["durationMs"] is None
    assert "_started" not in step


def test_events_before_the_first_task_are_ignored() -> None:
    events = History().add("ExecutionStarted").add("TaskSucceeded").step_ok("ReserveInventory", 1).events
    (step,) = summarize_steps(events)
    assert step["attempts"] == 1


def test_a_step_that_failed_the_execution_is_failed_not_retrying() -> None:
    # GIVEN RefundPayment exhausted its retries (it has no Catch) and the execution failed
    history = History().step_ok("ReserveInventory", 5).step_ok("ChargePayment", 5)
    history.entered("CreateShipment").scheduled().failed("InjectedFault", 1).exited("CreateShipment")
    history.step_ok("CancelShipment", 5)
    history.entered("RefundPayment").scheduled().failed("States.Timeout", 10)
    history.add("ExecutionFailed", 1, executionFailedEventDetails={"error": "States.Timeout"})
    steps = by_name(summarize_steps(history.events))
    # THEN the saga timeline should not show it as still retrying
    assert steps["RefundPayment"]["status"] == "FAILED"
