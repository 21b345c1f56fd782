"""One order, placed and followed to its end: what `sandbox order` does, as data.

The CLI, the web console, the pytest plugin and the chaos runner all call ``run_order``; it
returns an ``OrderRun`` and reports progress through ``on_event``, and never prints.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sandbox.errors import UsageError
from sandbox.waiting import wait_until

# Faults, dead letters and replays load for the orders that use them: a plain order never does.
if TYPE_CHECKING:
    from sandbox.demo_faults import OrderFaults
    from sandbox.dlq import DeadLetter
    from sandbox.orders import OrdersClient
    from sandbox.stack import LocalStack

DEFAULT_ITEMS = ({"productId": "espresso-beans", "quantity": 1}, {"productId": "mug", "quantity": 2})
STEP_KEYS = ("name", "status", "attempts", "durationMs", "isCompensation", "errors")


@dataclass(frozen=True)
class OrderRequest:
    """What to order, and the faults to give it (rules at the invoke boundary, not part of the request)."""

    customer_id: str = "demo-customer"
    items: tuple[dict[str, Any], ...] = DEFAULT_ITEMS
    faults: dict[str, Any] | None = None
    idempotency_key: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return {"customerId": self.customer_id, "items": list(self.items)}

    @property
    def expected_status(self) -> str:
        """The final order status the faults intend."""
        faults = self.faults or {}
        return "FAILED" if faults.get("fail") or faults.get("hang") else "COMPLETED"

    @property
    def is_poisoned(self) -> bool:
        return bool((self.faults or {}).get("poison"))


@dataclass(frozen=True)
class OrderAccepted:
    """The API accepted the order (201)."""

    order_id: str
    status: str
    total_amount: Any
    is_poisoned: bool
    is_replayed: bool = False  # the API replayed the first response for this idempotency key


@dataclass(frozen=True)
class StepFinished:
    """A saga step (or compensation) succeeded or failed."""

    step: dict[str, Any]


OrderEvent = OrderAccepted | StepFinished


@dataclass
class OrderRun:
    """How one order went: accepted, and (when followed) how its saga ended."""

    request: OrderRequest
    placed: dict[str, Any]
    final: dict[str, Any] | None = None
    elapsed_ms: int = 0
    replay: dict[str, Any] | None = None
    dead_letter: DeadLetter | None = None
    is_replayed: bool = False  # the API answered with the first response for this idempotency key

    @property
    def order_id(self) -> str:
        return str(self.placed["orderId"])

    @property
    def status(self) -> str:
        if self.final is not None:
            return str(self.final["status"])
        return str(self.placed["status"])

    @property
    def is_as_expected(self) -> bool:
        """Whether a followed order ended as its faults intend (a poisoned one: dead-lettered)."""
        if self.dead_letter is not None:
            return True
        return self.final is None or self.status == self.request.expected_status

    def to_json(self) -> dict[str, Any]:
        if self.dead_letter is not None:
            return {
                "orderId": self.order_id,
                "status": "PENDING",
                "replayed": self.is_replayed,
                "deadLetter": self.dead_letter.as_dict(),
            }
        if self.final is None:
            return {**self.placed, "replayed": self.is_replayed}
        final = self.final
        result = {
            "orderId": self.order_id,
            "replayed": self.is_replayed,
            "status": final["status"],
            "sagaStatus": final["sagaStatus"],
            "totalAmount": final["totalAmount"],
            "failureReason": final.get("failureReason"),
            "steps": [{key: step[key] for key in STEP_KEYS} for step in final["steps"]],
            "compensations": final["compensations"],
            "elapsedMs": self.elapsed_ms,
        }
        if self.replay is not None:
            result["replay"] = self.replay
        return result


def run_order(
    client: OrdersClient,
    request: OrderRequest,
    *,
    follow: bool = True,
    wait_seconds: float = 60,
    local: tuple[LocalStack, str] | None = None,
    replay: bool = False,
    on_event: Callable[[OrderEvent], None] = lambda _: None,
) -> OrderRun:
    """Place the order; unless ``follow`` is off, follow its saga (or its poisoned record) to the end.

    ``local`` is the local stack and its region: faults and replays need it. An order with faults
    gets an Idempotency-Key (its own, or a new one), so its id is known before it is placed and
    its rules are set first; they are cleared once it is followed to its end.
    """
    if replay and local is None:
        raise UsageError("replays work on the local stack only")
    rules: list[str] = []
    faults: OrderFaults | None = None
    if request.faults:
        from sandbox.demo_faults import OrderFaults, order_id_for_key, require_local_faults

        faults = OrderFaults(*require_local_faults(local))
        request = replace(request, idempotency_key=request.idempotency_key or uuid.uuid4().hex)
        rules = faults.add([(order_id_for_key(str(request.idempotency_key)), request.faults)])
    try:
        return _run(client, request, follow=follow, wait_seconds=wait_seconds, local=local,
                    replay=replay, on_event=on_event)  # fmt: skip
    finally:
        if faults is not None and follow:  # an order not followed keeps its rules until they lapse
            faults.clear(rules)


def _run(
    client: OrdersClient,
    request: OrderRequest,
    *,
    follow: bool,
    wait_seconds: float,
    local: tuple[LocalStack, str] | None,
    replay: bool,
    on_event: Callable[[OrderEvent], None],
) -> OrderRun:
    started = time.perf_counter()
    response = client.submit_order(request.payload, request.idempotency_key)
    run = OrderRun(request, dict(response.body), is_replayed=response.is_replayed)
    on_event(
        OrderAccepted(
            run.order_id,
            run.placed["status"],
            run.placed["totalAmount"],
            request.is_poisoned,
            run.is_replayed,
        )
    )
    if not follow:
        return run
    if request.is_poisoned and local is not None:
        run.dead_letter = wait_for_dead_letter(*local, run.order_id, wait_seconds)
        return run
    finished: set[int] = set()

    def report_steps(order: dict[str, Any]) -> None:
        for index, step in enumerate(order["steps"]):
            if index not in finished and step["status"] in ("SUCCEEDED", "FAILED"):
                finished.add(index)
                on_event(StepFinished(step))

    run.final = client.follow_order(run.order_id, timeout=wait_seconds, on_change=report_steps)
    run.elapsed_ms = int((time.perf_counter() - started) * 1000)
    if replay and local is not None:
        from sandbox.saga import replay_saga

        run.replay = replay_saga(*local, run.order_id, timeout=wait_seconds)
    return run


def wait_for_dead_letter(stack: LocalStack, region: str, order_id: str, wait_seconds: float) -> DeadLetter:
    """Wait until the poisoned outbox record of an order lands in the on-failure queue."""
    from sandbox.dlq import list_dead_letters

    return wait_until(
        lambda: next((d for d in list_dead_letters(stack, region) if order_id in d.order_ids), None),
        timeout=wait_seconds,
        what=f"the outbox record of order {order_id} to reach the on-failure queue",
    )
