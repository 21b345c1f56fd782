"""CancelHotel: release the trip's room (compensation of ReserveHotel; safe to run more than once)."""

from __future__ import annotations

from typing import Any

from trip_common import records
from trip_common.log import log


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Mark the trip's hotel reservation CANCELLED, whatever state it was in."""
    trip_id = event["tripId"]
    previous = records.release(records.table("HOTELS_TABLE"), trip_id, event["execution"], "CANCELLED")
    log("hotel cancelled", tripId=trip_id, previousStatus=previous)
    return {"status": "CANCELLED", "previousStatus": previous}
