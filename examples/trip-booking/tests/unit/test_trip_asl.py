"""The saga's definition: valid, every target exists, and compensation runs in reverse order."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

PROJECT = Path(__file__).resolve().parents[2]
ASL = PROJECT / "statemachine" / "booking.asl.json"
TERMINAL_TYPES = {"Succeed", "Fail"}
# Error names Step Functions itself gives (the rest are the handlers' exception class names).
BUILT_IN_PREFIXES = ("States.", "Lambda.")


def definition() -> dict[str, Any]:
    return json.loads(ASL.read_text())


def template() -> dict[str, Any]:
    return yaml_parse((PROJECT / "template.yaml").read_text())


def targets(state: dict[str, Any]) -> list[str]:
    """Every state ``state`` can move to."""
    found = [state["Next"]] if "Next" in state else []
    found += [catcher["Next"] for catcher in state.get("Catch", [])]
    found += [choice["Next"] for choice in state.get("Choices", [])]
    found += [state["Default"]] if "Default" in state else []
    return found


def path_from(states: dict[str, Any], start: str) -> list[str]:
    """The states run from ``start`` by following Next until a terminal state (no branching)."""
    path = [start]
    while "Next" in states[path[-1]]:
        path.append(states[path[-1]]["Next"])
    return path


def catch_target(state: dict[str, Any], error: str) -> str:
    """The state the first Catch matching ``error`` moves to."""
    return next(
        c["Next"] for c in state["Catch"] if error in c["ErrorEquals"] or "States.ALL" in c["ErrorEquals"]
    )


def test_the_definition_starts_at_a_state_and_every_target_exists():
    asl = definition()
    states = asl["States"]
    assert asl["StartAt"] in states
    for name, state in states.items():
        missing = [target for target in targets(state) if target not in states]
        assert not missing, f"{name} moves to unknown states {missing}"


def test_every_state_either_moves_on_or_ends():
    for name, state in definition()["States"].items():
        ends = state["Type"] in TERMINAL_TYPES or state.get("End") is True
        assert ends != ("Next" in state), f"{name} must have exactly one of Next or an end"


def test_every_state_is_reachable_from_the_start():
    asl = definition()
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += targets(asl["States"][name])
    assert seen == set(asl["States"])


def test_every_placeholder_is_substituted_by_the_template_and_every_substitution_used():
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    substitutions = template()["Resources"]["BookingSaga"]["Properties"]["DefinitionSubstitutions"]
    assert placeholders == set(substitutions)


@pytest.mark.parametrize(
    ("step", "error", "after"),
    [
        ("ReserveFlight", "InvalidTripError", ["TripFailed"]),
        ("ReserveFlight", "Lambda.Unknown", ["CancelFlight", "NotifyTripFailed", "TripFailed"]),
        ("ReserveHotel", "HotelFullError", ["CancelFlight", "NotifyTripFailed", "TripFailed"]),
        ("ReserveHotel", "States.Timeout", ["CancelHotel", "CancelFlight", "NotifyTripFailed", "TripFailed"]),
        (
            "ChargeCard",
            "CardDeclinedError",
            ["CancelHotel", "CancelFlight", "NotifyTripFailed", "TripFailed"],
        ),
        (
            "ChargeCard",
            "States.TaskFailed",
            ["RefundCard", "CancelHotel", "CancelFlight", "NotifyTripFailed", "TripFailed"],
        ),
    ],
)
def test_a_failed_step_compensates_what_it_may_have_done_in_reverse_order(step, error, after):
    # GIVEN the saga's definition
    states = definition()["States"]
    # WHEN the step fails with this error (a business error: only the steps before it landed)
    # THEN compensation runs from the latest step that may have landed back to the first
    assert path_from(states, catch_target(states[step], error)) == after


def test_the_happy_path_publishes_trip_booked_and_succeeds():
    states = definition()["States"]
    assert path_from(states, "ReserveFlight") == [
        "ReserveFlight",
        "ReserveHotel",
        "ChargeCard",
        "NotifyTripBooked",
        "TripBooked",
    ]
    assert states["TripBooked"]["Type"] == "Succeed"


def test_business_errors_are_not_retried_and_transient_ones_are():
    states = definition()["States"]
    assert "HotelServiceUnavailableError" in states["ReserveHotel"]["Retry"][0]["ErrorEquals"]
    for name in ("ReserveFlight", "ReserveHotel", "ChargeCard"):
        errors = {e for r in states[name]["Retry"] for e in r["ErrorEquals"]}
        assert "States.ALL" not in errors and "States.TaskFailed" not in errors
        assert {"InvalidTripError", "HotelFullError", "CardDeclinedError"}.isdisjoint(errors)


def test_every_error_the_saga_names_is_a_handler_exception_class(app_of):
    # Step Functions names a Python handler's error by its exception class: a typo would never match.
    named = {
        error
        for state in definition()["States"].values()
        for rule in state.get("Retry", []) + state.get("Catch", [])
        for error in rule["ErrorEquals"]
        if not error.startswith(BUILT_IN_PREFIXES)
    }
    classes = {
        name
        for folder in ("reserve_flight", "reserve_hotel", "charge_card")
        for name, value in vars(app_of(folder)).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert named <= classes, f"no handler raises {sorted(named - classes)}"


def test_the_saga_fails_with_the_error_of_the_step_that_failed():
    fail = definition()["States"]["TripFailed"]
    assert fail == {**fail, "Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}
    # Every Catch of a saga step keeps the error where TripFailed reads it; a lost notice keeps it too.
    states = definition()["States"]
    for step in ("ReserveFlight", "ReserveHotel", "ChargeCard"):
        assert {c["ResultPath"] for c in states[step]["Catch"]} == {"$.failure"}
    assert [c["ResultPath"] for c in states["NotifyTripFailed"]["Catch"]] == ["$.notificationFailure"]


@pytest.mark.parametrize(
    ("state", "event_type"), [("NotifyTripBooked", "TRIP_BOOKED"), ("NotifyTripFailed", "TRIP_FAILED")]
)
def test_each_notice_carries_its_event_type_as_a_message_attribute(state, event_type):
    parameters = definition()["States"][state]["Parameters"]
    assert parameters["Message"]["eventType"] == event_type
    assert parameters["MessageAttributes"]["eventType"] == {"DataType": "String", "StringValue": event_type}
