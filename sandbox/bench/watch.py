"""Following a run's orders to their end, by reading the orders table (never the API)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandbox.bench.plan import DEAD_LETTERED, TERMINAL_STATUSES, PlannedOrder
from sandbox.bench.tables import batch_get, order_key
from sandbox.dlq import DeadLetter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

POLL_INTERVAL = 0.1  # seconds between reads of the pending orders (growing to POLL_MAX_INTERVAL)
POLL_MAX_INTERVAL = 0.25
# Seconds between reads of the on-failure queue, and only while a poisoned order is pending: a
# poisoned record takes seconds to be dead-lettered, and each read also reads the stream.
DEAD_LETTER_INTERVAL = 1.0


@dataclass(frozen=True)
class ApiAnswer:
    """How the API answered one POST: 201 with the order's id, or a refusal."""

    status: int | None  # None: no HTTP answer (the API could not be reached)
    order_id: str | None = None
    refusal: str | None = None


@dataclass
class OrderOutcome:
    """What became of one planned order (times are wall-clock seconds, as the order items stamp them)."""

    planned: PlannedOrder
    sent_at: float | None = None
    accepted_at: float | None = None
    order_id: str | None = None
    refusal: str | None = None  # why the API did not accept it
    status: str | None = None  # the item's COMPLETED or FAILED, or DEAD-LETTERED (the item stays PENDING)
    reason: str | None = None
    finished_at: float | None = None
    # The answers to the same POST sent again with its idempotency key (PlannedOrder.duplicate).
    duplicate_answers: list[ApiAnswer] = field(default_factory=list)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES or self.status == DEAD_LETTERED

    @property
    def latency(self) -> float | None:
        """POST sent -> terminal status (or dead letter), in seconds."""
        if self.sent_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.sent_at)

    @property
    def is_unexpected(self) -> bool:
        return self.order_id is None or not self.planned.is_expected(self.status, self.reason)

    def describe(self) -> dict[str, Any]:
        actual = self.status or ("REFUSED" if self.order_id is None else "PENDING")
        return {
            "orderId": self.order_id,
            "index": self.planned.index,
            "kind": self.planned.kind,
            "expected": self.planned.expected,
            "actual": actual,
            "reason": self.refusal or self.reason,
        }


@dataclass(frozen=True)
class BenchProgress:
    """How far a run is, for a progress bar."""

    stage: str
    total: int
    accepted: int = 0
    refused: int = 0
    terminal: int = 0
    replays: int = 0  # sagas to start again once their order has ended (a chaos run's)
    replayed: int = 0


def _parse_time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


class OrderWatcher:
    """Reads the pending orders straight from the orders table, one batch read per poll for all of them.

    A poisoned order never leaves PENDING: it is done once its outbox record is in the on-failure
    queue, which ``read_dead_letters`` lists (read at most every ``dead_letter_interval`` seconds,
    and only while a poisoned order is pending).
    """

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        read_dead_letters: Callable[[], Iterable[DeadLetter]] = lambda: (),
        dead_letter_interval: float = DEAD_LETTER_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.dynamodb, self.table = dynamodb, table
        self.read_dead_letters = read_dead_letters
        self.dead_letter_interval, self.clock = dead_letter_interval, clock
        self._lock = threading.Lock()
        self._pending: dict[str, OrderOutcome] = {}
        self._dead_letters_read_at = clock()
        self.terminal = 0

    def add(self, outcome: OrderOutcome) -> None:
        with self._lock:
            self._pending[str(outcome.order_id)] = outcome

    @property
    def pending(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def poll(self) -> int:
        """Record every pending order that reached a terminal status; return how many are left."""
        pending = self.pending
        if pending:
            items = batch_get(
                self.dynamodb,
                self.table,
                [order_key(order_id) for order_id in pending],
                projection="orderId, #status, updatedAt, failureReason",
                names={"#status": "status"},
            )
            observed = time.time()
            with self._lock:
                for item in items:
                    if item.get("status") not in TERMINAL_STATUSES:
                        continue
                    outcome = self._pending.pop(item["orderId"], None)
                    if outcome is None:
                        continue
                    outcome.status, outcome.reason = item["status"], item.get("failureReason")
                    # The status function stamps updatedAt as it writes the terminal status: that is
                    # when the order finished; the poll only noticed it later.
                    outcome.finished_at = _parse_time(item.get("updatedAt")) or observed
                    self.terminal += 1
        self._poll_dead_letters()
        return len(self.pending)

    def _poll_dead_letters(self) -> None:
        """Record every pending order whose outbox record is in the on-failure queue."""
        with self._lock:
            is_due = any(o.planned.is_poisoned for o in self._pending.values()) and (
                self.clock() - self._dead_letters_read_at >= self.dead_letter_interval
            )
        if not is_due:
            return
        letters = list(self.read_dead_letters())
        self._dead_letters_read_at = self.clock()
        observed = time.time()
        with self._lock:
            for letter in letters:
                for order_id in letter.order_ids:
                    # Letters of earlier runs name other orders: only this run's pending ones count.
                    outcome = self._pending.pop(order_id, None)
                    if outcome is None:
                        continue
                    outcome.status = DEAD_LETTERED
                    # The letter's timestamp is when the engine gave up on the record.
                    outcome.finished_at = _parse_time(letter.failed_at) or observed
                    self.terminal += 1
