"""Charges and refunds: one charge per order, refunded at most once, never charged after a refund."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.aws import named_table
from shared.errors import PaymentDeclinedError
from shared.records import now_iso, put_once, undo_once

# The sandbox's stand-in for a card limit: larger charges are declined (a business error).
CHARGE_LIMIT = Decimal("10000.00")


def charge_payment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Record the order's charge, or raise PaymentDeclinedError over the limit."""
    table = table or named_table("PAYMENTS_TABLE")
    amount = Decimal(str(command["totalAmount"])).quantize(Decimal("0.01"))
    if amount > CHARGE_LIMIT:
        raise PaymentDeclinedError(f"charge of {amount} declined: over the {CHARGE_LIMIT} limit")
    charge = put_once(
        table,
        {
            "orderId": command["orderId"],
            "customerId": command["customerId"],
            "amount": amount,
            "status": "CHARGED",
            "chargedAt": now_iso(),
        },
        key_name="orderId",
    )
    return {"status": charge["status"], "amount": str(charge["amount"])}


def refund_payment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Refund the order's charge; with none yet, void it so that a late charge does nothing."""
    table = table or named_table("PAYMENTS_TABLE")
    key = {"orderId": command["orderId"]}
    is_refunded = undo_once(table, key, "CHARGED", "REFUNDED", stamp="refundedAt")
    return {"status": "REFUNDED" if is_refunded else "NOTHING_TO_REFUND"}
