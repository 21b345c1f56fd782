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
    """The order's causal timeline, read from the running engine (with its saga clock, when scaled)."""
    trace = build_trace(collect_sources(stack, settings, order_id))
    return with_clock(trace, stack.engine.endpoint_url) if stack.engine.engine != "localstack" else trace


def with_clock(trace: Trace, endpoint_url: str) -> Trace:
    """The trace with the engine's saga clock: its scale, and a note giving both clocks' durations."""
    from dataclasses import replace

    from sandbox.engine.clock import read_engine_clock
    from sandbox.settings import format_time_scale

    clock = read_engine_clock(endpoint_url)
    if clock is None or clock.time_scale is None:
        return trace
    scaled = replace(trace, time_scale=clock.time_scale)
    wall, saga = scaled.duration_ms, scaled.saga_duration_ms
    if wall is None:
        return scaled
    both = f"{saga / 1000:.1f}s of saga time" if saga is not None else "saga time unknown (waits skipped)"
    note = (
        f"saga clock {format_time_scale(clock.time_scale)}: {wall / 1000:.2f}s of wall time, {both} "
        f"(budgets floored at {clock.budget_floor_seconds:g}s; the clock as it is now, not as the order ran)"
    )
    return replace(scaled, notes=[*scaled.notes, note])
