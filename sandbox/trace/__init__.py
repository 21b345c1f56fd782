"""One causal timeline of an order, from what the engine recorded: logs, saga history, audit queue, tables.

``reading`` reads the engine (``collect_sources``); ``timeline`` turns what it read into
time-ordered entries (``build_trace``, pure), from the functions' structured log lines
(``log_entries``) and the saga's history (``saga_entries``); ``render`` draws a trace as a
mermaid sequence diagram, or as plain text.

Any execution of any state machine has its own trace: ``execution`` builds it (purely) from the
history, the definition and the functions' runs; ``execution_reading`` reads those
(``trace_execution``).
"""

from __future__ import annotations

from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.trace.events import TraceEvent
from sandbox.trace.execution import (
    Attempt,
    CatchRoute,
    ExecutionTrace,
    StateVisit,
    build_execution_trace,
    render_execution_text,
)
from sandbox.trace.execution_reading import trace_execution
from sandbox.trace.log_entries import api_entries, delivery_entries, notification_entries
from sandbox.trace.model import AuditMessage, Trace, TraceEntry, TraceSources
from sandbox.trace.reading import OrderNotFoundError, collect_sources, peek_messages
from sandbox.trace.render import render_mermaid, render_text
from sandbox.trace.saga_entries import COMPENSATION_OF, saga_entries
from sandbox.trace.timeline import build_trace, sort_entries

__all__ = [
    "COMPENSATION_OF",
    "Attempt",
    "AuditMessage",
    "CatchRoute",
    "ExecutionTrace",
    "OrderNotFoundError",
    "StateVisit",
    "Trace",
    "TraceEntry",
    "TraceEvent",
    "TraceSources",
    "api_entries",
    "build_execution_trace",
    "build_trace",
    "collect_sources",
    "delivery_entries",
    "notification_entries",
    "peek_messages",
    "render_execution_text",
    "render_mermaid",
    "render_text",
    "saga_entries",
    "sort_entries",
    "trace_execution",
    "trace_order",
]


def trace_order(stack: LocalStack, settings: Settings, order_id: str) -> Trace:
    """The order's causal timeline, read from the running engine."""
    return build_trace(collect_sources(stack, settings, order_id))
