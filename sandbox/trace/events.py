"""The ``trace_event`` values the handlers log, as the trace reads them.

The functions' own enum is ``services/shared/trace_events.py``. The sandbox never imports the
functions' code (it is Lambda code, packaged with ``shared`` on its own path), so it keeps this
copy; a unit test keeps the two in agreement.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

TRACE_EVENT_FIELD = "trace_event"


class TraceEvent(StrEnum):
    """The events the handlers log for the trace; the values are what the logs carry."""

    ORDER_WRITTEN = "order_written"
    ORDER_PLACED = "order_placed"
    IDEMPOTENT_REPLAY = "idempotent_replay"
    REQUEST_REFUSED = "request_refused"
    OUTBOX_PUBLISHED = "outbox_published"
    NOTIFICATION_RECEIVED = "notification_received"
    NOTIFICATION_SENT = "notification_sent"


def trace_event_of(fields: dict[str, Any]) -> TraceEvent | None:
    """The trace event a structured log line carries; None for lines the trace does not read."""
    value = fields.get(TRACE_EVENT_FIELD)
    try:
        return TraceEvent(value) if isinstance(value, str) else None
    except ValueError:  # an event this sandbox does not know (logged by newer functions)
        return None
