"""The handlers' business rules, called as plain functions."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from trip_common import ids
from trip_common.log import log

TRIP = {
    "tripId": "trip-1",
    "traveller": "Ada",
    "flight": "TP1234",
    "hotel": "harbour-view",
    "nights": 2,
    "amount": 300,
}


def test_a_complete_trip_request_has_no_problems(app_of):
    assert app_of("reserve_flight").trip_problems(TRIP) == []


def test_an_incomplete_trip_request_names_each_problem(app_of):
    # GIVEN a request without a traveller, with no nights and a negative amount
    trip = {**TRIP, "nights": 0, "amount": -5}
    del trip["traveller"]
    # WHEN it is checked
    problems = app_of("reserve_flight").trip_problems(trip)
    # THEN each problem is named
    assert problems == [
        "traveller must be a non-empty string",
        "nights must be a whole number of at least 1",
        "amount must be a positive number",
    ]


@pytest.mark.parametrize(
    "trip", [None, [], "trip-1", {**TRIP, "tripId": "has space"}, {**TRIP, "nights": True}]
)
def test_malformed_trip_requests_have_problems(app_of, trip):
    assert app_of("reserve_flight").trip_problems(trip)


@pytest.mark.parametrize(
    ("value", "amount"),
    [(420, Decimal(420)), ("420.50", Decimal("420.50")), (0, None), ("nan", None), ("x", None), (True, None)],
)
def test_an_amount_is_a_positive_number(app_of, value, amount):
    assert app_of("reserve_flight").amount_of(value) == amount


def test_an_invalid_trip_fails_before_anything_is_reserved(app_of):
    # GIVEN the flight handler, with no table to write to (the environment names none)
    app = app_of("reserve_flight")
    # WHEN it receives a request without a flight
    # THEN it raises the business error the saga catches, without touching DynamoDB
    with pytest.raises(app.InvalidTripError, match="flight must be a non-empty string"):
        app.lambda_handler({"trip": {**TRIP, "flight": ""}, "execution": "e-1"}, None)


def test_a_full_hotel_has_no_room(app_of):
    app = app_of("reserve_hotel")
    with pytest.raises(app.HotelFullError, match="full-hotel has no room left"):
        app.check_availability("full-hotel", retry_count=0)


def test_a_flaky_hotel_fails_its_first_attempt_only(app_of):
    app = app_of("reserve_hotel")
    with pytest.raises(app.HotelServiceUnavailableError):
        app.check_availability("flaky-hotel", retry_count=0)
    app.check_availability("flaky-hotel", retry_count=1)


def test_any_other_hotel_has_room(app_of):
    app_of("reserve_hotel").check_availability("harbour-view", retry_count=0)


def test_the_card_is_declined_above_its_limit_only(app_of):
    app = app_of("charge_card")
    app.authorize(Decimal(500), card_limit=Decimal(500))
    with pytest.raises(app.CardDeclinedError, match=r"500\.01 is above the card limit of 500"):
        app.authorize(Decimal("500.01"), card_limit=Decimal(500))


def test_a_reservation_id_is_the_same_for_every_attempt_of_a_trip():
    assert ids.reservation_id("hotel", "trip-1") == ids.reservation_id("hotel", "trip-1")
    assert ids.reservation_id("hotel", "trip-1") != ids.reservation_id("hotel", "trip-2")


@pytest.mark.parametrize(("kind", "prefix"), [("flight", "FL-"), ("hotel", "HT-"), ("charge", "CH-")])
def test_a_reservation_id_says_its_kind(kind, prefix):
    reservation_id = ids.reservation_id(kind, "trip-1")
    assert reservation_id.startswith(prefix)
    assert len(reservation_id) == len(prefix) + 10


def test_an_unknown_reservation_kind_is_refused():
    with pytest.raises(ValueError, match="unknown reservation kind 'car'"):
        ids.reservation_id("car", "trip-1")


def test_a_log_event_is_one_json_line(capsys):
    log("card charged", tripId="trip-1", amount=Decimal("12.50"))
    assert json.loads(capsys.readouterr().out) == {
        "message": "card charged",
        "tripId": "trip-1",
        "amount": "12.50",
    }
