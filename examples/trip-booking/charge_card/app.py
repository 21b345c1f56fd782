"""ChargeCard: charge the trip's amount to the traveller's card (the saga's last step)."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from trip_common import ids, records
from trip_common.log import log


class CardDeclinedError(Exception):
    """The card refused the charge (a business error: not retried, the hotel then the flight are released)."""


def authorize(amount: Decimal, card_limit: Decimal) -> None:
    """Raise CardDeclinedError when ``amount`` is above the card's limit."""
    if amount > card_limit:
        raise CardDeclinedError(f"{amount} is above the card limit of {card_limit}")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Charge the card, or raise CardDeclinedError for an amount above CARD_LIMIT."""
    trip_id = event["tripId"]
    amount = Decimal(str(event["amount"]))
    authorize(amount, Decimal(os.environ["CARD_LIMIT"]))
    charge_id = ids.reservation_id("charge", trip_id)
    stored = records.hold(
        records.table("PAYMENTS_TABLE"),
        trip_id,
        event["execution"],
        "CHARGED",
        {"chargeId": charge_id, "amount": amount},
    )
    log("card charged", tripId=trip_id, amount=amount, status=stored["status"])
    return {"chargeId": charge_id, "amount": str(amount), "status": stored["status"], "idScheme": ids.SCHEME}
