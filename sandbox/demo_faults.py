"""The order demo's faults (`sandbox order --fail ...`), as fault rules scoped to one order.

The demo's flags keep their vocabulary; each becomes a rule at the Lambda invoke boundary, scoped
to the order's saga execution (named after the order) or its outbox record (``OUTBOX#<orderId>``).
The order's id is known before it is placed: the order API names an order after its
Idempotency-Key. Nothing of this reaches the handlers: what deploys to AWS is the business code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.errors import UsageError
from sandbox.faults import Attempts, FaultSpec, StackTargets, fault_book
from sandbox.stack import LocalStack

# The order API's namespace for order ids (services/order_api/orders.py; a unit test keeps them equal).
ORDER_ID_NAMESPACE = uuid.UUID("6f1c2a8e-3b4d-5e6f-8a9b-0c1d2e3f4a5b")
STEP_STATES = {"inventory": "ReserveInventory", "payment": "ChargePayment", "shipping": "CreateShipment"}
PUBLISHER = "OutboxPublisherFunction"
# What a flaky step fails with: a transient error of the Lambda service, which the saga retries.
TRANSIENT_ERROR = "Lambda.ServiceException"
# A rule of an order that is never followed to its end (--no-wait) lapses after this long.
ORDER_RULE_SECONDS = 900.0


def order_id_for_key(idempotency_key: str) -> str:
    """The id of the order an Idempotency-Key places."""
    return str(uuid.uuid5(ORDER_ID_NAMESPACE, idempotency_key))


def order_fault_specs(faults: Mapping[str, Any] | None, order_id: str) -> list[FaultSpec]:
    """The rules that give one order the demo's faults (none for an order without faults)."""
    faults = faults or {}
    specs: list[FaultSpec] = []

    def add(target: str, kind: str, attempts: Attempts, **fields: Any) -> None:
        is_record = target == PUBLISHER
        specs.append(
            FaultSpec(
                target,
                kind,
                attempts,
                duration_seconds=ORDER_RULE_SECONDS,
                execution=None if is_record else order_id,
                record=order_id if is_record else None,
                **fields,
            )
        )

    every, first = Attempts(), Attempts(1, 1)
    if faults.get("fail"):
        step = str(faults["fail"])
        add(STEP_STATES[step], "error", every, cause=f"injected failure in {step}")
    for step, count in (faults.get("flaky") or {}).items():
        cause = f"injected transient error in {step} (its first {count} attempts fail)"
        add(STEP_STATES[step], "error", Attempts(1, int(count)), error=TRANSIENT_ERROR, cause=cause)
    if faults.get("timeout"):
        add(STEP_STATES[str(faults["timeout"])], "timeout", first)
    if faults.get("hang"):
        add(STEP_STATES[str(faults["hang"])], "timeout", every)
    if faults.get("duplicateDelivery"):
        add(PUBLISHER, "duplicate-delivery", first)
    if faults.get("crash") == "publisher":
        add(PUBLISHER, "crash", first)
    if faults.get("poison"):
        add(PUBLISHER, "poison", every)
    return specs


class OrderFaults:
    """The demo's faults of orders on one local stack: rules set before the orders, cleared after."""

    def __init__(self, stack: LocalStack, region: str) -> None:
        self.stack, self.region = stack, region
        self._targets: StackTargets | None = None

    def add(self, orders: Iterable[tuple[str, Mapping[str, Any] | None]]) -> list[str]:
        """Set the rules of every (order id, faults) pair in one request; the ids of the rules set."""
        specs = [spec for order_id, faults in orders for spec in order_fault_specs(faults, order_id)]
        if not specs:
            return []
        if self._targets is None:
            self._targets = StackTargets.of_stack(self.stack, self.region, self.stack.name)
        targets = self._targets
        return [rule["id"] for rule in fault_book(self.stack).add(targets.engine_rule(s) for s in specs)]

    def clear(self, rule_ids: list[str]) -> None:
        fault_book(self.stack).clear_rules(rule_ids)


def require_local_faults(local: tuple[LocalStack, str] | None) -> tuple[LocalStack, str]:
    """The local stack that injects an order's faults; a UsageError on AWS, which has no fault hook."""
    if local is None:
        raise UsageError(
            "faults are injected by the local engine at the Lambda invoke boundary; AWS has no such hook",
            hint="run the order on the local stack, or express the faults for AWS FIS with "
            "`sandbox faults export --fis`",
        )
    return local
