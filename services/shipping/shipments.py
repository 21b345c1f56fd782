"""Shipments: one per order, cancelled at most once, never created after a cancel."""

from __future__ import annotations

from typing import Any

from shared.aws import named_table
from shared.records import now_iso, put_once, undo_once


def create_shipment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Record the order's shipment; an existing one is returned, never duplicated."""
    table = table or named_table("SHIPMENTS_TABLE")
    shipment = put_once(
        table,
        {
            "orderId": command["orderId"],
            "customerId": command["customerId"],
            "trackingId": f"TRK-{command['orderId'][:8].upper()}",
            "status": "CREATED",
            "createdAt": now_iso(),
        },
        key_name="orderId",
    )
    return {"status": shipment["status"], "trackingId": shipment["trackingId"]}


def cancel_shipment(command: dict[str, Any], table: Any = None) -> dict[str, Any]:
    """Cancel the order's shipment; with none yet, void it so that a late shipment does nothing."""
    table = table or named_table("SHIPMENTS_TABLE")
    key = {"orderId": command["orderId"]}
    is_cancelled = undo_once(table, key, "CREATED", "CANCELLED", stamp="cancelledAt")
    return {"status": "CANCELLED" if is_cancelled else "NOTHING_TO_CANCEL"}
