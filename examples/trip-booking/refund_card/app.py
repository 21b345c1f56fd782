"""RefundCard: refund the trip's charge (compensation of ChargeCard when its outcome is unknown)."""

from __future__ import annotations

from typing import Any

from trip_common import records
from trip_common.log import log


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Mark the trip's charge REFUNDED; a tombstone when nothing was charged, so a late charge does nothing."""
    trip_id = event["tripId"]
    previous = records.release(records.table("PAYMENTS_TABLE"), trip_id, event["execution"], "REFUNDED")
    log("card refunded", tripId=trip_id, previousStatus=previous)
    return {"status": "REFUNDED", "previousStatus": previous}
