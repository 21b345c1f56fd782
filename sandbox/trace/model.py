"""What a trace is made of: the engine's records of an order, and the timeline built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.logs import LogLine, iso


def millis_between(start: datetime, end: datetime) -> int:
    return round((end - start).total_seconds() * 1000)


def as_datetime(value: Any) -> datetime:
    """A datetime, or an ISO 8601 text, as an aware datetime (UTC when it names no zone)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TraceEntry:
    """One thing that happened to the order."""

    at: datetime
    source: str
    kind: str
    name: str
    detail: str = ""
    duration_ms: int | None = None
    status: str | None = None

    @property
    def ends_at(self) -> datetime:
        return self.at + timedelta(milliseconds=self.duration_ms or 0)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "at": iso(self.at),
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "detail": self.detail,
        }
        if self.duration_ms is not None:
            entry["durationMs"] = self.duration_ms
        if self.status is not None:
            entry["status"] = self.status
        return entry


@dataclass(frozen=True)
class Trace:
    """An order's timeline, its final status and what the sources could not tell."""

    order_id: str
    status: str | None
    failure_reason: str | None
    saga_status: str | None
    entries: list[TraceEntry]
    notes: list[str] = field(default_factory=list)
    # The engine's saga clock when the trace was read (`sandbox up --time-scale`; math.inf: max).
    time_scale: float | None = None

    @property
    def started_at(self) -> datetime | None:
        return self.entries[0].at if self.entries else None

    @property
    def saga_duration_ms(self) -> int | None:
        """The timeline's length on the saga clock (None without a finite scale)."""
        wall = self.duration_ms
        if wall is None or self.time_scale is None or self.time_scale == float("inf"):
            return None
        return round(wall * self.time_scale)

    @property
    def duration_ms(self) -> int | None:
        if not self.entries:
            return None
        end = max(entry.ends_at for entry in self.entries)
        return millis_between(self.entries[0].at, end)

    def to_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "status": self.status,
            "failureReason": self.failure_reason,
            "sagaStatus": self.saga_status,
            "startedAt": iso(self.started_at) if self.started_at else None,
            "durationMs": self.duration_ms,
            "clock": {
                "timeScale": "max" if self.time_scale == float("inf") else self.time_scale,
                "wallMs": self.duration_ms,
                "sagaMs": self.saga_duration_ms,
            },
            "entries": [entry.to_json() for entry in self.entries],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class AuditMessage:
    """An EventBridge event as the audit queue received it."""

    event: dict[str, Any]
    sent_at: datetime


@dataclass
class TraceSources:
    """What the engine recorded about one order."""

    order_id: str
    order: dict[str, Any] | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] | None = None
    saga_status: str | None = None
    log_lines: list[LogLine] = field(default_factory=list)
    audit_messages: list[AuditMessage] = field(default_factory=list)
    # detail-type -> "rule → target" for every rule on the bus whose pattern matches it
    rule_matches: dict[str, list[str]] = field(default_factory=dict)
    # (execution name, history) of operator replays of the saga (`sandbox order --replay`)
    replays: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    # Faults the engine injected into the order's stream deliveries (its OUTBOX# record)
    injections: list[dict[str, Any]] = field(default_factory=list)
    holds: list[dict[str, Any]] = field(default_factory=list)  # the saga's steps a debugger held
