"""ReserveHotel: hold a room for the trip's nights (the saga's second step)."""

from __future__ import annotations

from typing import Any

import aws_lambda_powertools
from aws_lambda_powertools import Logger
from trip_common import ids, records

# Hotels whose answer is known in advance, so a request can ask for a failure.
FULL_HOTELS = frozenset({"full-hotel"})
FLAKY_HOTELS = frozenset({"flaky-hotel"})

logger = Logger(service="hotels")


class HotelFullError(Exception):
    """The hotel has no room for the trip (a business error: not retried, the flight is released)."""


class HotelServiceUnavailableError(Exception):
    """The hotel's booking service did not answer (a transient error: the saga retries it)."""


def check_availability(hotel: str, retry_count: int) -> None:
    """Raise the error the hotel answers with on this attempt (``retry_count`` 0 is the first)."""
    if hotel in FULL_HOTELS:
        raise HotelFullError(f"{hotel} has no room left")
    if hotel in FLAKY_HOTELS and retry_count == 0:
        raise HotelServiceUnavailableError(f"{hotel} did not answer; try again")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Hold a room, or raise HotelFullError / HotelServiceUnavailableError as the hotel answers."""
    trip_id, hotel, nights = event["tripId"], event["hotel"], int(event["nights"])
    retry_count = int(event.get("retryCount", 0))
    logger.append_keys(tripId=trip_id)
    check_availability(hotel, retry_count)
    reservation_id = ids.reservation_id("hotel", trip_id)
    stored = records.hold(
        records.table("HOTELS_TABLE"),
        trip_id,
        event["execution"],
        "RESERVED",
        {"reservationId": reservation_id, "hotel": hotel, "nights": nights},
    )
    # The version proves which Powertools this function runs with: its own pin, not another one.
    logger.info(
        "hotel reserved",
        extra={"status": stored["status"], "powertoolsVersion": aws_lambda_powertools.__version__},
    )
    return {
        "reservationId": reservation_id,
        "status": stored["status"],
        "attempt": retry_count + 1,
        "idScheme": ids.SCHEME,
        "powertoolsVersion": aws_lambda_powertools.__version__,
    }
