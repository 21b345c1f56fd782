"""AWS's failure semantics for DynamoDB stream mappings, which the engine's poller ignores."""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StreamDelivery:
    """A stream mapping's delivery: the mapping and the delivery attempt of the records' head."""

    mapping: str
    attempt: int


# Set while a stream mapping's delivery invokes its function (for fault rules on mappings).
STREAM_DELIVERY: contextvars.ContextVar[StreamDelivery | None] = contextvars.ContextVar(
    "sandbox_stream_delivery", default=None
)


def _batch_item_failures(result: dict[str, Any]) -> list[Any]:
    body = result.get("body")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return []
    return list(body.get("batchItemFailures") or []) if isinstance(body, dict) else []


def _error_type(result: dict[str, Any]) -> str:
    body = result.get("body")
    return str(body.get("errorType") or "Unhandled") if isinstance(body, dict) else "Unhandled"


def _sequence(record: dict[str, Any]) -> int:
    return int((record.get("dynamodb") or {}).get("SequenceNumber") or 0)


def _first_failed(result: dict[str, Any], delivered: list[dict[str, Any]], reports_items: bool) -> int | None:
    """Index of the first record of the delivery that failed, -1 for all of it, None for none.

    As on AWS: a function error fails the whole delivery, and so does a reported identifier that
    names no record of it; of several reported records the lowest sequence number counts.
    """
    if result.get("error"):
        return -1
    failures = _batch_item_failures(result) if reports_items else []
    if not failures:
        return None
    positions = {str(_sequence(record)): index for index, record in enumerate(delivered)}
    identifiers = [str((failure or {}).get("itemIdentifier") or "") for failure in failures]
    if not all(identifier in positions for identifier in identifiers):
        return -1
    return min(positions[identifier] for identifier in identifiers)


class _ShardProgress:
    """Where a stream mapping stands inside the batch the engine keeps handing it."""

    def __init__(self) -> None:
        self.done_through = -1  # sequence number of the last record acknowledged
        self.span: int | None = None  # records to deliver from the head next time (None: all)
        self.attempts = 0  # failed deliveries of the head record


_stream_poll = threading.local()


def polling_streams(poll: Callable[[], bool]) -> Callable[[], bool]:
    """Mark the engine's DynamoDB stream poller, so only its invocations get stream semantics."""

    def poll_marked() -> bool:
        _stream_poll.active = True
        try:
            return poll()
        finally:
            _stream_poll.active = False

    return poll_marked


def with_stream_batch_semantics(
    execute: Callable[..., dict[str, Any]],
    find_mapping: Callable[[str, str], dict[str, Any] | None],
    send_to_on_failure: Callable[..., None],
) -> Callable[..., dict[str, Any]]:
    """AWS's failure semantics for DynamoDB stream mappings, down to the record.

    The engine hands a stream mapping the same batch until the function succeeds on it, retries
    it forever and ignores reported item failures. Wrapping the poller's invocations:
    - ReportBatchItemFailures: the records before the first failed one are checkpointed and never
      delivered again; delivery resumes at the failed record.
    - BisectBatchOnFunctionError: a failed record is then retried alone (a function error on
      several records first halves them), so only the record that keeps failing is counted,
      and the healthy records after it are delivered again (at least once, as on AWS).
    - MaximumRetryAttempts: once the failing record (or, without bisecting, the rest of the
      batch) has failed more than that many times, it goes to the OnFailure destination alone
      and delivery moves on.
    Only the poller's invocations are wrapped; a direct Invoke of the same function is not.
    """
    progress: dict[str, _ShardProgress] = {}

    def run(func: dict[str, Any], event: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        records = event.get("Records") if isinstance(event, dict) else None
        if not getattr(_stream_poll, "active", False) or not records:
            return execute(func, event, *args, **kwargs)
        config = func.get("config") or func
        mapping = find_mapping(str(config.get("FunctionName", "")), str(records[0].get("eventSourceARN", "")))
        if mapping is None:
            return execute(func, event, *args, **kwargs)
        reports_items = "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or [])
        bisects = bool(mapping.get("BisectBatchOnFunctionError"))
        max_retries = mapping.get("MaximumRetryAttempts")
        state = progress.setdefault(str(mapping.get("UUID")), _ShardProgress())
        pending = [record for record in records if _sequence(record) > state.done_through]
        result: dict[str, Any] = {"body": {"batchItemFailures": []}, "log": ""}
        while pending:
            delivered = pending[: state.span] if state.span else pending
            token = STREAM_DELIVERY.set(StreamDelivery(str(mapping.get("UUID")), state.attempts + 1))
            try:
                result = execute(func, {**event, "Records": delivered}, *args, **kwargs)
            finally:
                STREAM_DELIVERY.reset(token)
            failed = _first_failed(result, delivered, reports_items)
            if failed is None:
                state.done_through, state.span, state.attempts = _sequence(delivered[-1]), None, 0
                pending = pending[len(delivered) :]
                continue
            if failed > 0:  # checkpoint before the failed record; it heads the next delivery
                state.done_through, state.attempts = _sequence(delivered[failed - 1]), 0
                pending, delivered = pending[failed:], delivered[failed:]
            if bisects and len(delivered) > 1:
                if failed < 0:  # which record failed is unknown: halve, uncounted
                    state.span = (len(delivered) + 1) // 2
                    return _as_failure(result)
                state.span = 1  # the failed record, alone from now on
            state.attempts += 1
            if max_retries is None or int(max_retries) < 0 or state.attempts <= int(max_retries):
                return _as_failure(result)
            discarded = delivered[: state.span] if state.span else delivered
            send_to_on_failure(mapping, func, discarded, mapping.get("EventSourceArn", ""),
                               {**result, "function_error": _error_type(result)}, "RetryAttemptsExhausted")  # fmt: skip
            state.done_through, state.span, state.attempts = _sequence(discarded[-1]), None, 0
            pending = pending[len(discarded) :]
        return result

    return run


def _as_failure(result: dict[str, Any]) -> dict[str, Any]:
    """The engine's failed-invocation answer, so it keeps the batch and backs off before retrying."""
    if result.get("error"):
        return result
    failures = _batch_item_failures(result)
    return {
        "error": True,
        "body": {
            "errorType": "BatchItemFailures",
            "errorMessage": f"{len(failures)} record(s) reported as failed",
        },
        "log": result.get("log", ""),
    }
