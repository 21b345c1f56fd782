"""What a log line means to `sandbox trace`: its ``trace_event`` field, never its message text.

A handler logs ``extra={"trace_event": TraceEvent.X, ...}`` on each line the trace reads, so a
message can be reworded without dropping the line from any trace. The sandbox (which never
imports the functions' code) keeps the same values in ``sandbox/trace/events.py``; a unit test
keeps the two in agreement.
"""

from __future__ import annotations

from enum import StrEnum


class TraceEvent(StrEnum):
    """The events the handlers log for the trace; the values are what the logs carry."""

    ORDER_WRITTEN = "order_written"  # the ORDER# and OUTBOX# items, in one transaction
    ORDER_PLACED = "order_placed"  # POST /orders placed a new order
    IDEMPOTENT_REPLAY = "idempotent_replay"  # POST /orders answered from its key's stored response
    REQUEST_REFUSED = "request_refused"  # POST /orders refused over its key (status_code 422 or 409)
    OUTBOX_PUBLISHED = "outbox_published"  # OrderPlaced put on the bus; saga_started says if it began
    NOTIFICATION_RECEIVED = "notification_received"  # an outcome event reached the notifications function
    NOTIFICATION_SENT = "notification_sent"  # is_new: stored now; otherwise it had been sent already
