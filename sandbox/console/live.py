"""The one place the console polls the engine; every open page hears the changes as events.

While at least one page listens, the watcher lists the orders every ``scan_interval`` (the API's
list is a table scan: it finds orders placed anywhere, by the CLI too) and reads the orders still
running every ``follow_interval`` (one cheap read each), so a saga's end reaches the pages within
a fraction of a second whoever placed it. With no page listening it reads nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from sandbox.errors import SandboxError
from sandbox.orders import TERMINAL_SAGA_STATUSES, OrdersClient

FOLLOW_WINDOW_S = 120.0  # a PENDING order older than this is not followed (a poisoned one stays PENDING)
# An ended order is followed until its notification is stored (the last thing its trace shows),
# for at most this long after its saga ended.
NOTIFY_GRACE_S = 5.0
MAX_FOLLOWED = 10
HEARTBEAT_S = 15.0
T = TypeVar("T")


@dataclass(frozen=True)
class ConsoleEvent:
    """One server-sent event: its name and JSON data."""

    name: str
    data: Any

    def encode(self) -> str:
        return f"event: {self.name}\ndata: {json.dumps(self.data, default=str)}\n\n"


def _age_seconds(order: dict[str, Any], now: datetime) -> float:
    try:
        created = datetime.fromisoformat(str(order.get("createdAt")))
    except ValueError:
        return 0.0
    return (now - (created if created.tzinfo else created.replace(tzinfo=UTC))).total_seconds()


def _fingerprint(order: dict[str, Any]) -> str:
    moved = [order.get("status"), order.get("sagaStatus"), order.get("steps"), order.get("notifications")]
    return json.dumps(moved, default=str)


def _is_told(order: dict[str, Any], now: datetime) -> bool:
    """Whether the order's story is complete: its saga ended, and its notification sent (or overdue)."""
    if order.get("sagaStatus") not in TERMINAL_SAGA_STATUSES or order.get("status") == "PENDING":
        return False
    if order.get("notifications"):
        return True
    try:
        ended = datetime.fromisoformat(str(order.get("updatedAt")))
    except ValueError:
        return True
    return (now - (ended if ended.tzinfo else ended.replace(tzinfo=UTC))).total_seconds() > NOTIFY_GRACE_S


@dataclass
class OrderWatcher:
    """Polls the order API for every listening page and publishes ``orders``, ``order`` and ``engine`` events.

    ``connect`` gives the order API's client (called again after a failure: the engine may have
    restarted); ``describe`` turns an order (as the API returns it) into an ``order`` event's data.
    """

    connect: Callable[[], OrdersClient]
    describe: Callable[[dict[str, Any]], dict[str, Any]]
    scan_interval: float = 0.5
    follow_interval: float = 0.2
    orders: list[dict[str, Any]] | None = None
    engine_problem: dict[str, Any] | None = None
    _client: OrdersClient | None = None
    _followed: dict[str, str] = field(default_factory=dict)  # order id -> last fingerprint
    _listeners: set[asyncio.Queue[ConsoleEvent | None]] = field(default_factory=set)
    _wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    is_closed: bool = False
    polls: int = 0

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def listen(self) -> AsyncIterator[ConsoleEvent]:
        """The events for one page, starting with the current state; ends when the page goes."""
        queue: asyncio.Queue[ConsoleEvent | None] = asyncio.Queue()
        if self.is_closed:
            return
        if self.orders is not None:
            queue.put_nowait(ConsoleEvent("orders", self.orders))
        queue.put_nowait(self._engine_event())
        self._listeners.add(queue)
        self._wanted.set()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_S)
                except TimeoutError:
                    event = ConsoleEvent("heartbeat", {})
                if event is None:  # the console is stopping
                    return
                yield event
        finally:
            self._listeners.discard(queue)
            if not self._listeners:
                self._wanted.clear()

    def close(self) -> None:
        """End every page's stream (the console is stopping): a server waits for open streams."""
        self.is_closed = True
        for queue in self._listeners:
            queue.put_nowait(None)

    def close_soon(self) -> None:
        """``close``, from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)

    def publish(self, event: ConsoleEvent) -> None:
        for queue in self._listeners:
            queue.put_nowait(event)

    def follow(self, placed: dict[str, Any], customer_id: str) -> None:
        """An order placed from the console: listed at once and followed from the next poll."""
        order_id = str(placed["orderId"])
        self._followed.setdefault(order_id, "")
        row = {
            "orderId": order_id,
            "customerId": customer_id,
            "status": placed.get("status", "PENDING"),
            "totalAmount": placed.get("totalAmount"),
            "createdAt": placed.get("executedAt"),
        }
        listed = [order for order in self.orders or [] if order["orderId"] != order_id]
        self.orders = [row, *listed]
        self.publish(ConsoleEvent("orders", self.orders))

    async def run(self) -> None:
        """Poll while pages listen; runs until cancelled.

        The engine is read in worker threads; what was read is applied here, on the event loop,
        the only place the watcher's state changes.
        """
        self._loop = asyncio.get_running_loop()
        next_scan = 0.0
        while True:
            await self._wanted.wait()
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + self.scan_interval
                listed = await self._read(lambda client: client.list_orders())
                if listed is not None:
                    self._apply_listing(listed)
            if self._followed:
                read = await self._read(partial(_read_orders, ids=list(self._followed)))
                for order in read or []:
                    if order is not None:
                        self._apply_order(order)
            await asyncio.sleep(
                self.follow_interval if self._followed else min(self.follow_interval * 2, 0.5)
            )

    async def _read(self, work: Callable[[OrdersClient], T]) -> T | None:
        """``work`` on the order API in a worker thread; None (and an ``engine`` event) when it fails."""
        self.polls += 1
        try:
            if self._client is None:
                self._client = await asyncio.to_thread(self.connect)
            result = await asyncio.to_thread(work, self._client)
        except SandboxError as error:
            self._client = None
            problem = {"ok": False, "message": str(error), "hint": error.hint}
            if problem != self.engine_problem:
                self.engine_problem = problem
                self.publish(self._engine_event())
            return None
        if self.engine_problem is not None:
            self.engine_problem = None
            self.publish(self._engine_event())
        return result

    def _engine_event(self) -> ConsoleEvent:
        return ConsoleEvent("engine", self.engine_problem or {"ok": True})

    def _apply_listing(self, listed: list[dict[str, Any]]) -> None:
        """A fresh list of orders: follow the recent ones still PENDING; publish it if it changed."""
        now = datetime.now(UTC)
        for order in listed[:MAX_FOLLOWED]:
            if order["status"] == "PENDING" and _age_seconds(order, now) < FOLLOW_WINDOW_S:
                self._followed.setdefault(order["orderId"], "")
        if listed != self.orders:
            self.orders = listed
            self.publish(ConsoleEvent("orders", listed))

    def _apply_order(self, order: dict[str, Any]) -> None:
        """A followed order as read: publish its steps when they moved, its row when it changed."""
        order_id = str(order["orderId"])
        if order_id not in self._followed:
            return
        if self._update_row(order) and self.orders is not None:
            self.publish(ConsoleEvent("orders", self.orders))
        fingerprint = _fingerprint(order)
        if fingerprint != self._followed[order_id]:
            self._followed[order_id] = fingerprint
            self.publish(ConsoleEvent("order", self.describe(order)))
        now = datetime.now(UTC)
        if _is_told(order, now) or _age_seconds(order, now) > FOLLOW_WINDOW_S:
            del self._followed[order_id]

    def _update_row(self, order: dict[str, Any]) -> bool:
        """Bring the order's row of the list up to date; whether it changed."""
        keys = ("customerId", "status", "totalAmount", "createdAt", "failureReason")
        rows = self.orders or []
        row = next((row for row in rows if row["orderId"] == order["orderId"]), None)
        fresh = {
            "orderId": order["orderId"],
            **{key: order[key] for key in keys if order.get(key) is not None},
        }
        if row == fresh:
            return False
        self.orders = [fresh if r is row else r for r in rows] if row is not None else [fresh, *rows]
        return True


def _read_orders(client: OrdersClient, ids: list[str]) -> list[dict[str, Any] | None]:
    """Each order as the API returns it; None for one not readable yet (placed a moment ago)."""
    orders: list[dict[str, Any] | None] = []
    for order_id in ids:
        response = client.get_order(order_id)
        if response.status >= 400 and response.status != 404:
            raise SandboxError(f"the order API answered {response.status} for order {order_id}")
        orders.append(None if response.status == 404 else dict(response.body))
    return orders
