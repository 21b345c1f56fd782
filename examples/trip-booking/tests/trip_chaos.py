"""The trip saga's chaos inputs and invariants: what must hold however its steps are broken.

`sandbox chaos` runs them from this folder (`--inputs tests.trip_chaos:trips
--invariants tests.trip_chaos:nothing_held_after_a_failure ...`), and the chaos test calls them
through the plugin. Each invariant gets the run (the stack's clients and outputs, every execution
with its input and outcome) and returns one readable line per violation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# One trip in ten of each kind: most book, some fail for a business reason of their own.
KINDS = (
    {},
    {},
    {},
    {},
    {"nights": 1},
    {"hotel": "flaky-hotel"},
    {"hotel": "full-hotel"},
    {"amount": 5000},  # above the local CardLimit (500): declined
    {"nights": 0},  # invalid: nothing is reserved
    {"amount": 120},
)


def trips(index: int) -> dict[str, Any]:
    """The ``index``-th trip of a run: an id of its own, a kind by turn."""
    trip = {
        "tripId": f"chaos-trip-{index:05d}",
        "traveller": "Grace Hopper",
        "flight": "TP1234",
        "hotel": "harbour-view",
        "nights": 2,
        "amount": 300,
    }
    return {**trip, **KINDS[index % len(KINDS)]}


def _status(context: Any, table_output: str, trip_id: str) -> tuple[str | None, dict[str, Any]]:
    item = (
        context.client("dynamodb")
        .get_item(
            TableName=context.outputs[table_output], Key={"tripId": {"S": trip_id}}, ConsistentRead=True
        )
        .get("Item")
    )
    plain = {name: next(iter(value.values())) for name, value in (item or {}).items()}
    return plain.get("status"), plain


def booked_trips_hold_everything(context: Any) -> list[str]:
    """A booked trip holds its flight and hotel and one charge of its amount."""
    wrong = []
    for execution in context.executions:
        if execution.status != "SUCCEEDED":
            continue
        trip = execution.input["tripId"]
        flight, _ = _status(context, "FlightsTableName", trip)
        hotel, _ = _status(context, "HotelsTableName", trip)
        payment, charge = _status(context, "PaymentsTableName", trip)
        if (flight, hotel, payment) != ("RESERVED", "RESERVED", "CHARGED"):
            wrong.append(f"{trip}: booked, but flight {flight}, hotel {hotel}, payment {payment}")
        elif Decimal(str(charge.get("amount"))) != Decimal(str(execution.input["amount"])):
            wrong.append(
                f"{trip}: charged {charge.get('amount')}, the trip costs {execution.input['amount']}"
            )
    return wrong


def nothing_held_after_a_failure(context: Any) -> list[str]:
    """A trip that failed holds nothing: no reserved flight or hotel, no charge that was not refunded."""
    wrong = []
    for execution in context.executions:
        if execution.status == "SUCCEEDED":
            continue
        trip = execution.input["tripId"]
        held = [
            f"{what} {status}"
            for what, table, holding in (
                ("flight", "FlightsTableName", "RESERVED"),
                ("hotel", "HotelsTableName", "RESERVED"),
                ("payment", "PaymentsTableName", "CHARGED"),
            )
            if (status := _status(context, table, trip)[0]) == holding
        ]
        if held:
            wrong.append(f"{trip}: {execution.status} ({execution.error}) but still holds {', '.join(held)}")
    return wrong


INVARIANTS = (booked_trips_hold_everything, nothing_held_after_a_failure)
