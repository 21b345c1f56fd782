"""DynamoDB stream mappings as on AWS: ParallelizationFactor lanes per shard, each with AWS's failure semantics.

The engine's poller invokes each batch inline on its one polling thread, ignores
ParallelizationFactor, and after any failed delivery stalls the whole stream (and its SQS and
Kinesis polling) for a fixed second. This poller replaces it for DynamoDB stream mappings:

- Lanes: the records read are split by a hash of their partition key into ParallelizationFactor
  (1-10) lanes. A lane delivers its records in stream order with at most one batch in flight, off
  the polling thread, so records of one partition key reach the function in order while up to
  ParallelizationFactor batches run at once ("the number of batches to process concurrently from
  each shard", AWS's CreateEventSourceMapping reference).
- The engine's read position is the low-water mark: the first record some lane has not yet
  acknowledged. A lane never sees the records it acknowledged again; after a restart (the
  position is persisted, the lanes are not) the records past the mark are delivered again, at
  least once, as on AWS.
- Each lane has its own ReportBatchItemFailures checkpoint, BisectBatchOnFunctionError,
  MaximumRetryAttempts, MaximumRecordAgeInSeconds, OnFailure destination and retry backoff, so
  a failed or poisoned record holds back its own lane only, not the stream.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .clock import CLOCK

_log = logging.getLogger(__name__)

# AWS documents no interval for retrying a failed stream batch: it "retries the entire batch" and
# "repeated errors block processing of the affected shard" (docs.aws.amazon.com/lambda/latest/dg/
# invocation-retries.html), and it polls each shard "at a base rate of 4 times per second"
# (.../with-ddb.html). So the first retry comes one such poll later, and each further failure of
# the same record doubles the wait (AWS's exponential backoff for the retries it does document,
# .../invocation-async-error-handling.html), capped so a handler fixed while its records are retried
# forever (MaximumRetryAttempts -1, the default) is back at work within seconds.
FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0
MAX_PARALLELIZATION_FACTOR = 10
# How far the lanes may read past the low-water mark: a lane stuck on one record lets the others
# run this far ahead of it before they wait too.
WINDOW_RECORDS = 10_000
# Records read per pass, so one pass stays short when a large backlog is caught up.
READ_RECORDS = 1_000


@dataclass(frozen=True)
class StreamDelivery:
    """A stream mapping's delivery: the mapping and the delivery attempt of the records' head."""

    mapping: str
    attempt: int


# Set while a stream mapping's delivery invokes its function (for fault rules on mappings).
STREAM_DELIVERY: contextvars.ContextVar[StreamDelivery | None] = contextvars.ContextVar(
    "sandbox_stream_delivery", default=None
)


def retry_delay(attempts: int) -> float:
    """Seconds (of saga time) a lane waits before delivering its head again after ``attempts`` counted failures.

    0 (a batch halved after a function error, not counted) waits as long as the first retry.
    """
    doublings = min(max(0, attempts - 1), 16)  # past the cap already; bounded so it stays a float
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * (1 << doublings))


def parallelization_factor(mapping: dict[str, Any]) -> int:
    """The mapping's ParallelizationFactor, within AWS's range 1-10."""
    try:
        factor = int(mapping.get("ParallelizationFactor") or 1)
    except (TypeError, ValueError):
        factor = 1
    return max(1, min(MAX_PARALLELIZATION_FACTOR, factor))


def partition_lane(record: dict[str, Any], partition_key: str | None, lanes: int) -> int:
    """The lane of a stream record: a stable hash of its partition key (all its keys if unnamed)."""
    if lanes <= 1:
        return 0
    keys = (record.get("dynamodb") or {}).get("Keys") or {}
    value = keys.get(partition_key) if partition_key and partition_key in keys else keys
    return zlib.crc32(json.dumps(value, sort_keys=True).encode()) % lanes


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


def _created_at(record: dict[str, Any]) -> float | None:
    created = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    return float(created) if created is not None else None


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


@dataclass
class Settlement:
    """What one delivery of a lane came to."""

    acknowledged: int = 0  # records checkpointed, never delivered again
    discarded: list[dict[str, Any]] = field(default_factory=list)  # sent to the OnFailure destination
    condition: str = ""  # why they were discarded: RetryAttemptsExhausted or MaxRecordAgeExceeded
    retry_at: float | None = None  # when the lane delivers its head again, after a failure


class StreamLane:
    """One of a mapping's ParallelizationFactor lanes: its records in stream order, one batch in flight at most."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.pending: deque[tuple[int, dict[str, Any]]] = deque()  # (stream position, record)
        self.span: int | None = None  # records to deliver from the head next time (None: a batch)
        self.attempts = 0  # counted failed deliveries of the head record
        self.retry_at = 0.0  # no delivery before this time (after a failure)
        self.in_flight = False

    @property
    def low_water(self) -> int | None:
        """Stream position of the lane's first record not yet acknowledged."""
        return self.pending[0][0] if self.pending else None

    def next_batch(self, batch_size: int, now: float) -> list[dict[str, Any]]:
        """The records to deliver now from the head (none while a batch is in flight or backing off)."""
        if self.in_flight or not self.pending or now < self.retry_at:
            return []
        size = min(self.span or batch_size, batch_size)
        return [record for _position, record in itertools.islice(self.pending, size)]

    def settle(
        self, mapping: dict[str, Any], delivered: list[dict[str, Any]], result: dict[str, Any], now: float
    ) -> Settlement:
        """Apply AWS's failure semantics to the lane after ``delivered`` (its head) came back as ``result``.

        - ReportBatchItemFailures: the records before the first failed one are checkpointed and
          never delivered again; delivery resumes at the failed record.
        - MaximumRecordAgeInSeconds: failed records older than that are discarded, not retried.
        - BisectBatchOnFunctionError: a failed record is then retried alone (a function error on
          several records first halves them, uncounted), so only the record that keeps failing is
          counted, and the healthy records after it are delivered again (at least once, as on AWS).
        - MaximumRetryAttempts: once the failing record (or, without bisecting, the rest of the
          batch) has failed more than that many times, it is discarded alone and the lane moves on.
        Otherwise the lane retries its head after ``retry_delay``.
        """
        failed = _first_failed(result, delivered, "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or []))  # fmt: skip
        if failed is None:
            self._acknowledge(len(delivered))
            return Settlement(acknowledged=len(delivered))
        settlement = Settlement()
        if failed > 0:  # checkpoint before the failed record; it heads the next delivery
            self._acknowledge(failed)
            settlement.acknowledged, delivered = failed, delivered[failed:]
        max_age = int(mapping.get("MaximumRecordAgeInSeconds") or -1)
        too_old = (
            list(itertools.takewhile(lambda r: (_created_at(r) or now) < now - max_age, delivered))
            if max_age > 0
            else []
        )
        if too_old:
            self._acknowledge(len(too_old))
            settlement.discarded, settlement.condition = too_old, "MaxRecordAgeExceeded"
            return settlement
        if mapping.get("BisectBatchOnFunctionError") and len(delivered) > 1:
            if failed < 0:  # which record failed is unknown: halve, uncounted
                self.span = (len(delivered) + 1) // 2
                self.retry_at = settlement.retry_at = now + CLOCK.scaled(retry_delay(0))
                return settlement
            self.span = 1  # the failed record, alone from now on
        self.attempts += 1
        max_retries = mapping.get("MaximumRetryAttempts")
        if max_retries is None or int(max_retries) < 0 or self.attempts <= int(max_retries):
            self.retry_at = settlement.retry_at = now + CLOCK.scaled(retry_delay(self.attempts))
            return settlement
        discarded = delivered[: self.span] if self.span else delivered
        self._acknowledge(len(discarded))
        settlement.discarded, settlement.condition = discarded, "RetryAttemptsExhausted"
        return settlement

    def _acknowledge(self, count: int) -> None:
        for _ in range(count):
            self.pending.popleft()
        self.span, self.attempts, self.retry_at = None, 0, 0.0


class _MappingLanes:
    """A mapping's lanes over its stream, and what it read of it."""

    def __init__(self, position: int, factor: int) -> None:
        self.position = position  # the low-water mark, as last written to the engine
        self.read_to = position  # stream position past the last record read
        self.factor = factor
        self.lanes = [StreamLane(index) for index in range(factor)]

    def low_water(self) -> int:
        heads = [lane.pending[0][0] for lane in self.lanes if lane.pending]
        return min(heads, default=self.read_to)

    def is_in_flight(self) -> bool:
        return any(lane.in_flight for lane in self.lanes)


@dataclass
class StreamSource:
    """One DynamoDB stream mapping as the engine holds it, for one pass of the poller."""

    mapping: dict[str, Any]
    function: dict[str, Any]
    horizon: int  # oldest readable stream position
    end: int  # stream position past the newest record
    partition_key: str | None
    read: Callable[[int, int], list[dict[str, Any]]]  # up to n records from a stream position
    keep: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]  # the mapping's FilterCriteria
    position: Callable[[], int]  # the engine's read position of the mapping (set at its start if new)
    set_position: Callable[[int], None]


def _after(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


class StreamPoller:
    """Polls DynamoDB stream mappings in ParallelizationFactor lanes, delivering batches off the polling thread."""

    def __init__(
        self,
        execute: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
        send_to_on_failure: Callable[..., None],
        dispatch: Callable[..., None],
        wake: Callable[[], None],
        *,
        schedule: Callable[[float, Callable[[], None]], None] = _after,
        clock: Callable[[], float] = time.time,
        log: logging.Logger = _log,
    ) -> None:
        """``dispatch(task, *args)`` runs a delivery elsewhere; ``wake()`` asks for a poll pass soon."""
        self._execute, self._send, self._dispatch = execute, send_to_on_failure, dispatch
        self._wake, self._schedule, self._clock, self._log = wake, schedule, clock, log
        self._lock = threading.Lock()
        self._mappings: dict[str, _MappingLanes] = {}

    def poll(self, sources: Iterable[StreamSource], live: Collection[str] | None = None) -> bool:
        """One pass: read new records into lanes, start the batches due, advance the low-water marks.

        True when a batch started or a position advanced. Lanes of mappings not in ``live``
        (deleted) are dropped; a delivery still in flight for them is then ignored.
        """
        processed = False
        for source in sources:
            processed = self._poll_mapping(source) or processed
        if live is not None:
            with self._lock:
                for uuid in set(self._mappings) - set(live):
                    del self._mappings[uuid]
        return processed

    def lanes(self, uuid: str) -> list[StreamLane]:
        """A mapping's lanes (empty before its first pass)."""
        with self._lock:
            state = self._mappings.get(uuid)
            return list(state.lanes) if state else []

    def _poll_mapping(self, source: StreamSource) -> bool:
        uuid = str(source.mapping.get("UUID"))
        factor = parallelization_factor(source.mapping)
        batch_size = max(1, int(source.mapping.get("BatchSize") or 100))
        now = self._clock()
        with self._lock:
            state = self._mappings.get(uuid)
            position = source.position()
            if state is None or state.position != position or position < source.horizon:
                # New, or its position moved under it (reset, restored, records expired): start over there.
                state = self._mappings[uuid] = _MappingLanes(max(position, source.horizon), factor)
            elif state.factor != factor:
                if state.is_in_flight():
                    return False
                # Re-partitioned: records acknowledged past the low-water mark come again (at least once).
                state = self._mappings[uuid] = _MappingLanes(state.position, factor)
            if state.position != position:
                source.set_position(state.position)
            self._read(source, state)
            batches = []
            for lane in state.lanes:
                batch = lane.next_batch(batch_size, now)
                if batch:
                    lane.in_flight = True
                    batches.append((lane, batch))
            advanced = self._advance(source, state)
        for lane, batch in batches:
            self._dispatch(self._deliver, source, state, lane, batch)
        return advanced or bool(batches)

    def _read(self, source: StreamSource, state: _MappingLanes) -> None:
        room = WINDOW_RECORDS - (state.read_to - state.position)
        if room <= 0 or state.read_to >= source.end:
            return
        records = source.read(state.read_to, min(room, READ_RECORDS))
        if not records:
            return
        kept = {id(record) for record in source.keep(records)}
        for offset, record in enumerate(records):
            if id(record) in kept:
                lane = state.lanes[partition_lane(record, source.partition_key, state.factor)]
                lane.pending.append((state.read_to + offset, record))
        state.read_to += len(records)

    @staticmethod
    def _advance(source: StreamSource, state: _MappingLanes) -> bool:
        low_water = state.low_water()
        if low_water <= state.position:
            return False
        source.set_position(low_water)
        state.position = low_water
        return True

    def _deliver(
        self, source: StreamSource, state: _MappingLanes, lane: StreamLane, batch: list[dict[str, Any]]
    ) -> None:
        mapping = source.mapping
        uuid = str(mapping.get("UUID"))
        token = STREAM_DELIVERY.set(StreamDelivery(uuid, lane.attempts + 1))
        try:
            result = self._execute(source.function, {"Records": batch})
        except Exception as error:  # a failed invoke path is a failed delivery, not a dead lane
            self._log.exception("ESM: delivery to %s failed", mapping.get("FunctionName"))
            result = {"error": True, "body": {"errorType": type(error).__name__, "errorMessage": str(error)}}
        finally:
            STREAM_DELIVERY.reset(token)
        now = self._clock()
        with self._lock:
            # A superseded mapping (reset, deleted, re-partitioned) keeps nothing of this delivery.
            settlement = (
                lane.settle(mapping, batch, result, now) if self._mappings.get(uuid) is state else None
            )
            lane.in_flight = False
        if settlement is not None:
            self._report(source, batch, result, settlement)
            if settlement.discarded:
                self._send(mapping, source.function, settlement.discarded, mapping.get("EventSourceArn", ""),
                           {**result, "function_error": _error_type(result)}, settlement.condition)  # fmt: skip
            if settlement.retry_at is not None:
                self._schedule(max(0.0, settlement.retry_at - now), self._wake)
        self._wake()

    def _report(
        self,
        source: StreamSource,
        batch: list[dict[str, Any]],
        result: dict[str, Any],
        settlement: Settlement,
    ) -> None:
        mapping, name = source.mapping, source.mapping.get("FunctionName")
        if settlement.acknowledged == len(batch):
            mapping["LastProcessingResult"] = f"OK - {len(batch)} records"
            if result.get("log"):
                self._log.info("ESM: Lambda %s output:\n%s", name, result["log"])
            return
        mapping["LastProcessingResult"] = "FAILED"
        body = result.get("body") if isinstance(result.get("body"), dict) else {}
        self._log.warning(
            "ESM: Lambda %s failed processing %d DynamoDB stream records (errorType=%s errorMessage=%s)%s\n%s",
            name, len(batch), _error_type(result), (body or {}).get("errorMessage"),
            f"; {len(settlement.discarded)} sent on failure ({settlement.condition})" if settlement.discarded else "",
            result.get("log", ""),
        )  # fmt: skip


def engine_stream_sources(lambda_svc: Any) -> Iterator[StreamSource]:
    """The engine's enabled DynamoDB stream mappings, each yielded inside its account and region."""
    from ministack.services import dynamodb

    for account, region, esm in lambda_svc._iter_all_esms():
        account_token = lambda_svc._request_account_id.set(account)
        region_token = lambda_svc._request_region.set(region)
        try:
            source = _engine_source(lambda_svc, dynamodb, esm)
            if source is not None:
                yield source
        finally:
            lambda_svc._request_account_id.reset(account_token)
            lambda_svc._request_region.reset(region_token)


def _engine_source(lambda_svc: Any, dynamodb: Any, esm: dict[str, Any]) -> StreamSource | None:
    """The engine's poller's own checks: an enabled mapping of this account's and region's live stream."""
    if not esm.get("Enabled", True) or getattr(dynamodb, "_stream_records", None) is None:
        return None
    source_arn = esm.get("EventSourceArn", "")
    try:
        spec = lambda_svc.parse_arn(source_arn)
    except lambda_svc.ArnParseError:
        return None
    if spec.service != "dynamodb" or (spec.account_id, spec.region) != (lambda_svc.get_account_id(), lambda_svc.get_region()):  # fmt: skip
        return None
    table_stream = lambda_svc._dynamodb_stream_table_from_arn_spec(spec)
    if table_stream is None:
        return None
    table_name = table_stream[0]
    function, _config = lambda_svc._get_func_record_for_qualifier(esm["FunctionName"], esm.get("Qualifier"))
    table = dynamodb._tables.get(table_name)
    if function is None or not table or table.get("LatestStreamArn") != source_arn:
        return None
    horizon = dynamodb.stream_start_position(table_name)
    end = dynamodb.stream_end_position(table_name)
    if end == horizon:
        return None
    esm_id = esm["UUID"]
    positions, positions_lock = (
        lambda_svc._dynamodb_stream_positions,
        lambda_svc._dynamodb_stream_positions_lock,
    )

    def position() -> int:
        with positions_lock:
            if esm_id not in positions:
                positions[esm_id] = (
                    horizon if esm.get("StartingPosition", "LATEST") == "TRIM_HORIZON" else end
                )
            return int(positions[esm_id])

    def set_position(value: int) -> None:
        with positions_lock:
            positions[esm_id] = value

    return StreamSource(
        mapping=esm,
        function=function,
        horizon=horizon,
        end=end,
        partition_key=table.get("pk_name"),
        read=lambda start, limit: list(dynamodb.stream_records_since(table_name, start, limit)),
        keep=lambda records: list(lambda_svc._apply_filter_criteria(records, esm)),
        position=position,
        set_position=set_position,
    )


def polling_dynamodb_streams(lambda_svc: Any) -> Callable[[], bool]:
    """A replacement for the engine's ``_poll_dynamodb_streams``: its mappings polled in lanes.

    Deliveries go through the engine's ``_execute_function`` as it is when they run (with the
    fault rules the patches put there), discarded records to the engine's on-failure record.
    """
    poller = StreamPoller(
        execute=lambda function, event: lambda_svc._execute_function(function, event),
        send_to_on_failure=lambda *args: lambda_svc._send_ddb_stream_failure_record(*args),
        dispatch=lambda task, *args: lambda_svc.spawn_background(
            task, *args, thread_name="ministack-esm-stream"
        ),
        wake=lambda_svc._esm_wake.set,
        log=lambda_svc.logger,
    )

    def poll_dynamodb_streams() -> bool:
        live = {str(esm.get("UUID")) for _account, _region, esm in lambda_svc._iter_all_esms()}
        return poller.poll(engine_stream_sources(lambda_svc), live)

    return poll_dynamodb_streams
