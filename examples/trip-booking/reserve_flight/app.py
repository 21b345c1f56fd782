"""ReserveFlight: check the trip request and hold a seat on its flight (the saga's first step)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from trip_common import ids, records
from trip_common.log import log

TRIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TEXT_FIELDS = ("traveller", "flight", "hotel")


class InvalidTripError(Exception):
    """The trip request cannot be booked as given; nothing was reserved, so nothing is compensated."""


def trip_problems(trip: Any) -> list[str]:
    """What is wrong with a trip request (empty when it can be booked)."""
    if not isinstance(trip, dict):
        return ["the trip must be a JSON object"]
    problems = []
    if not isinstance(trip.get("tripId"), str) or not TRIP_ID.match(trip["tripId"]):
        problems.append("tripId must be 1-64 letters, digits, '-' or '_'")
    problems += [
        f"{field} must be a non-empty string" for field in TEXT_FIELDS if not _is_text(trip.get(field))
    ]
    nights = trip.get("nights")
    if isinstance(nights, bool) or not isinstance(nights, int) or nights < 1:
        problems.append("nights must be a whole number of at least 1")
    if amount_of(trip.get("amount")) is None:
        problems.append("amount must be a positive number")
    return problems


def amount_of(value: Any) -> Decimal | None:
    """The positive amount ``value`` holds (a JSON number or a numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount > 0 else None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Hold a seat for the trip, or raise InvalidTripError for a request that cannot be booked."""
    trip = event.get("trip")
    problems = trip_problems(trip)
    if problems:
        raise InvalidTripError("; ".join(problems))
    assert isinstance(trip, dict)  # trip_problems has checked it
    trip_id = trip["tripId"]
    reservation_id = ids.reservation_id("flight", trip_id)
    stored = records.hold(
        records.table("FLIGHTS_TABLE"),
        trip_id,
        event["execution"],
        "RESERVED",
        {"reservationId": reservation_id, "flight": trip["flight"], "traveller": trip["traveller"]},
    )
    log("flight reserved", tripId=trip_id, flight=trip["flight"], status=stored["status"])
    return {"reservationId": reservation_id, "status": stored["status"], "idScheme": ids.SCHEME}
