"""The trip-booking saga on a local engine: the sandbox's pytest plugin deploys template.yaml.

Only the plugin's generic ``sandbox_stack`` fixture is used: ``execute`` runs the saga and waits
for its end, ``outputs`` names the stack's tables, ``client`` reads them, ``trace_text`` explains
a failure. Each trip has an id of its own, so the tests can run in any order, or at once.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.integration

T = TypeVar("T")

SAGA_STEPS = ["ReserveFlight", "ReserveHotel", "ChargeCard"]
COMPENSATIONS = {"RefundCard", "CancelHotel", "CancelFlight"}


def new_trip(**changes: Any) -> dict[str, Any]:
    """A trip request with an id of its own (a happy one unless ``changes`` say otherwise)."""
    trip = {
        "tripId": f"trip-{uuid.uuid4().hex[:12]}",
        "traveller": "Ada Lovelace",
        "flight": "TP1234",
        "hotel": "harbour-view",
        "nights": 2,
        "amount": 300,
    }
    return {**trip, **changes}


def card_limit(sandbox_stack) -> Decimal:
    return Decimal(sandbox_stack.outputs["CardLimit"])


def book(sandbox_stack, trip: dict[str, Any]):
    """Run the saga for ``trip`` (execution name = trip id) and wait for its end."""
    return sandbox_stack.execute(sandbox_stack.outputs["BookingSagaArn"], trip, name=trip["tripId"])


def record(sandbox_stack, table_output: str, trip_id: str) -> dict[str, str] | None:
    """The trip's item in the table ``table_output`` names, as plain strings (None when absent)."""
    response = sandbox_stack.client("dynamodb").get_item(
        TableName=sandbox_stack.outputs[table_output], Key={"tripId": {"S": trip_id}}, ConsistentRead=True
    )
    item = response.get("Item")
    return None if item is None else {name: next(iter(value.values())) for name, value in item.items()}


def status_of(sandbox_stack, table_output: str, trip_id: str) -> str | None:
    item = record(sandbox_stack, table_output, trip_id)
    return None if item is None else item["status"]


def eventually(
    check: Callable[[], T | None], *, what: str, explain: Callable[[], str], timeout: float = 30.0
) -> T:
    """What ``check`` returns once it returns something; after ``timeout`` seconds fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while (value := check()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{explain()}")
        time.sleep(0.1)  # SNS delivers to its subscriber on its own time: poll for the record it writes
    return value


def function_log(sandbox_stack, function_output: str, limit: int = 20) -> str:
    """The last log lines of the function ``function_output`` names (for a failure's message)."""
    name = sandbox_stack.outputs[function_output]
    try:
        events = sandbox_stack.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    except Exception as error:  # only a message is at stake: say why there is none
        return f"(no log of {name}: {error})"
    lines = [event["message"].rstrip() for event in events[-limit:]]
    return f"last log lines of {name}:\n" + ("\n".join(lines) or "(none)")


def trace_of(sandbox_stack, result) -> str:
    """The execution's trace as `sandbox trace` prints it: an assertion's message, rendered only on failure."""
    return sandbox_stack.trace_text(result.arn)


def steps_run(result) -> list[str]:
    """The saga steps and compensations the execution entered, in order."""
    return [state for state in result.states if state in SAGA_STEPS or state in COMPENSATIONS]


def test_a_happy_trip_is_booked_and_holds_its_three_records(sandbox_stack):
    # GIVEN a trip whose amount is exactly the card's limit
    trip = new_trip(amount=int(card_limit(sandbox_stack)))
    # WHEN the saga runs
    result = book(sandbox_stack, trip)
    # THEN it succeeds through the three steps, compensates nothing, and each service holds its record
    assert result.is_succeeded, trace_of(sandbox_stack, result)
    assert steps_run(result) == SAGA_STEPS, trace_of(sandbox_stack, result)
    assert "NotifyTripBooked" in result.states, trace_of(sandbox_stack, result)
    assert status_of(sandbox_stack, "FlightsTableName", trip["tripId"]) == "RESERVED"
    assert status_of(sandbox_stack, "HotelsTableName", trip["tripId"]) == "RESERVED"
    payment = record(sandbox_stack, "PaymentsTableName", trip["tripId"])
    assert payment is not None and payment["status"] == "CHARGED"
    assert Decimal(payment["amount"]) == card_limit(sandbox_stack)


def test_a_full_hotel_fails_the_trip_and_releases_the_flight(sandbox_stack):
    # GIVEN a trip to a hotel with no room
    trip = new_trip(hotel="full-hotel")
    # WHEN the saga runs
    result = book(sandbox_stack, trip)
    # THEN it fails with the hotel's error; the flight is compensated, the hotel (which did nothing) is not
    assert result.status == "FAILED", trace_of(sandbox_stack, result)
    assert result.error == "HotelFullError", trace_of(sandbox_stack, result)
    assert steps_run(result) == ["ReserveFlight", "ReserveHotel", "CancelFlight"], trace_of(
        sandbox_stack, result
    )
    assert status_of(sandbox_stack, "FlightsTableName", trip["tripId"]) == "CANCELLED"
    assert record(sandbox_stack, "HotelsTableName", trip["tripId"]) is None
    assert record(sandbox_stack, "PaymentsTableName", trip["tripId"]) is None


def test_a_declined_card_releases_the_hotel_then_the_flight(sandbox_stack):
    # GIVEN a trip whose amount is above the card's limit (the CardLimit parameter from samconfig.toml)
    trip = new_trip(amount=int(card_limit(sandbox_stack)) + 1)
    # WHEN the saga runs
    result = book(sandbox_stack, trip)
    # THEN it fails with the card's error, compensates in reverse order, and nothing stays held
    assert result.status == "FAILED", trace_of(sandbox_stack, result)
    assert result.error == "CardDeclinedError", trace_of(sandbox_stack, result)
    assert steps_run(result) == [*SAGA_STEPS, "CancelHotel", "CancelFlight"], trace_of(sandbox_stack, result)
    assert status_of(sandbox_stack, "FlightsTableName", trip["tripId"]) == "CANCELLED"
    assert status_of(sandbox_stack, "HotelsTableName", trip["tripId"]) == "CANCELLED"
    assert record(sandbox_stack, "PaymentsTableName", trip["tripId"]) is None


def test_an_invalid_trip_fails_before_anything_is_reserved(sandbox_stack):
    trip = new_trip(nights=0)
    result = book(sandbox_stack, trip)
    assert result.status == "FAILED", trace_of(sandbox_stack, result)
    assert result.error == "InvalidTripError", trace_of(sandbox_stack, result)
    assert steps_run(result) == ["ReserveFlight"], trace_of(sandbox_stack, result)
    assert record(sandbox_stack, "FlightsTableName", trip["tripId"]) is None


def test_a_hotel_that_fails_once_is_retried_and_the_trip_booked(sandbox_stack):
    # GIVEN a hotel whose first answer is a transient error
    trip = new_trip(hotel="flaky-hotel")
    # WHEN the saga runs
    result = book(sandbox_stack, trip)
    # THEN its Retry runs the step again, which succeeds on the second attempt
    assert result.is_succeeded, trace_of(sandbox_stack, result)
    assert result.output["steps"]["hotel"]["result"]["attempt"] == 2, trace_of(sandbox_stack, result)
    assert steps_run(result) == SAGA_STEPS, trace_of(sandbox_stack, result)


def test_the_hotel_function_runs_with_its_own_pinned_powertools(sandbox_stack):
    # GIVEN ReserveHotelFunction, whose requirements.txt pins aws-lambda-powertools==2.43.1
    # WHEN a trip is booked
    result = book(sandbox_stack, new_trip())
    # THEN the handler imported the pinned version, not the one the sandbox itself runs on
    assert result.is_succeeded, trace_of(sandbox_stack, result)
    assert result.output["steps"]["hotel"]["result"]["powertoolsVersion"] == "2.43.1"


def test_the_steps_use_the_shared_layer(sandbox_stack):
    # GIVEN three functions that import trip_common from the CommonLayer
    # WHEN a trip is booked
    result = book(sandbox_stack, new_trip())
    # THEN each step's ids come from the layer's module
    assert result.is_succeeded, trace_of(sandbox_stack, result)
    steps = result.output["steps"]
    ids = {step: steps[step]["result"] for step in ("flight", "hotel", "payment")}
    assert {step: output["idScheme"] for step, output in ids.items()} == dict.fromkeys(
        ids, "trip_common.ids/1"
    )
    assert ids["flight"]["reservationId"].startswith("FL-")
    assert ids["hotel"]["reservationId"].startswith("HT-")
    assert ids["payment"]["chargeId"].startswith("CH-")


def test_trips_booked_at_once_each_end_as_their_input_says(sandbox_stack):
    # GIVEN trips of every kind, twice over
    over_limit = int(card_limit(sandbox_stack)) + 1
    kinds = [
        ({}, None),
        ({"hotel": "full-hotel"}, "HotelFullError"),
        ({"amount": over_limit}, "CardDeclinedError"),
        ({"hotel": "flaky-hotel"}, None),
    ] * 2
    trips = [new_trip(**changes) for changes, _ in kinds]
    # WHEN their sagas run at the same time
    with ThreadPoolExecutor(len(trips)) as pool:
        results = list(pool.map(lambda trip: book(sandbox_stack, trip), trips))
    # THEN each ends as its own input says, with its own records
    for trip, result, (_, error) in zip(trips, results, kinds, strict=True):
        assert result.name == trip["tripId"], trace_of(sandbox_stack, result)
        assert result.status == ("FAILED" if error else "SUCCEEDED"), trace_of(sandbox_stack, result)
        assert result.error == error, trace_of(sandbox_stack, result)
        flight = status_of(sandbox_stack, "FlightsTableName", trip["tripId"])
        assert flight == ("CANCELLED" if error else "RESERVED"), trace_of(sandbox_stack, result)


def test_the_node_notifier_records_a_booked_trip_and_not_a_failed_one(sandbox_stack):
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the TripNotifierFunction (nodejs) cannot run")
    # GIVEN a failed trip (its saga publishes TRIP_FAILED), then a booked one (TRIP_BOOKED)
    failed = new_trip(hotel="full-hotel")
    booked = new_trip()
    assert book(sandbox_stack, failed).error == "HotelFullError"
    result = book(sandbox_stack, booked)
    assert result.is_succeeded, trace_of(sandbox_stack, result)
    # WHEN the topic has delivered the booked trip's event to the notifier
    notice = eventually(
        lambda: record(sandbox_stack, "NotificationsTableName", booked["tripId"]),
        what=f"the notifier's record of {booked['tripId']}",
        explain=lambda: function_log(sandbox_stack, "TripNotifierFunctionName"),
    )
    # THEN it recorded the event type from the message attribute; the filter policy kept TRIP_FAILED away
    assert notice["status"] == "NOTIFIED"
    assert notice["eventType"] == "TRIP_BOOKED"
    assert notice["traveller"] == booked["traveller"]
    assert record(sandbox_stack, "NotificationsTableName", failed["tripId"]) is None
