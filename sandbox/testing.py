"""Saga tests of your own project: run a state machine (or, on the demo, place an order), then assert.

The pytest plugin (``sandbox.pytest_plugin``) hands these out as fixtures: ``sandbox_stack`` is a
``SandboxStack`` of any template (``execute``, ``outputs``, ``client``, ``trace_text``);
``place_order`` calls ``SandboxStack.place`` on the order demo. The order assertions fail with a
message a person can act on, followed by the order's trace (the timeline `sandbox trace` prints).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sandbox.dlq import DeadLetter, list_dead_letters
from sandbox.items import plain_item
from sandbox.orders import SAGA_STEPS, OrdersClient
from sandbox.runs import OrderRequest, OrderRun, run_order
from sandbox.saga import executions_of
from sandbox.settings import Settings
from sandbox.stack import LocalStack, require_demo, reset_stack
from sandbox.trace import Trace, render_text, trace_order

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from sandbox.executions import ExecutionResult

# What each table's item says while the order holds it (a charge not refunded, ...).
HELD = {"PaymentsTableName": "CHARGED", "ShipmentsTableName": "CREATED", "ReservationsTableName": "RESERVED"}


class SagaAssertionError(AssertionError):
    """A saga assertion that failed; its message ends with the order's trace."""


@dataclass(frozen=True)
class SandboxStack:
    """A stack deployed on a running local engine, ready for tests."""

    settings: Settings
    stack: LocalStack

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def endpoint_url(self) -> str:
        return self.stack.engine.endpoint_url

    @property
    def outputs(self) -> dict[str, str]:
        return self.stack.outputs

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def orders(self) -> OrdersClient:
        """The stack's HTTP API, called as curl would."""
        return OrdersClient(self.api_url)

    def client(self, service: str) -> Any:
        """A boto3 client of the engine (dummy credentials, the stack's region)."""
        return self.stack.client(service, self.region)

    def execute(
        self,
        state_machine: str | None = None,
        input: Any = None,
        *,
        name: str | None = None,
        wait_seconds: float = 60,
    ) -> ExecutionResult:
        """Start an execution of one of the stack's state machines (logical id, name or ARN; None: the
        only one) and wait until it ends."""
        from sandbox.executions import run_execution

        return run_execution(
            self.stack,
            self.region,
            self.settings.stack_name,
            state_machine,
            input,
            name=name,
            wait_seconds=wait_seconds,
        )

    def trace_text(self, execution_arn: str) -> str:
        """The execution's trace as `sandbox trace` prints it (for assertion messages)."""
        from sandbox.trace import render_execution_text, trace_execution

        return render_execution_text(
            trace_execution(self.stack, self.region, self.settings.stack_name, execution_arn)
        )

    def make_product(self, stock: int = 10, price: str = "5.00") -> str:
        """A product of the caller's own (a unique id), so no other test's orders move its stock."""
        product_id = f"test-{uuid.uuid4().hex[:12]}"
        dynamodb: DynamoDBClient = self.client("dynamodb")
        dynamodb.put_item(
            TableName=self.outputs["InventoryTableName"],
            Item={"productId": {"S": product_id}, "name": {"S": product_id},
                  "price": {"N": str(Decimal(price))}, "stock": {"N": str(stock)}},
        )  # fmt: skip
        return product_id

    def stock_of(self, product_id: str) -> int:
        item = self._item("InventoryTableName", {"productId": {"S": product_id}})
        return int(item["stock"]) if item else 0

    def place(
        self,
        items: list[tuple[str, int]] | None = None,
        *,
        customer: str | None = None,
        fail: str | None = None,
        flaky: dict[str, int] | None = None,
        duplicate_delivery: bool = False,
        crash_publisher: bool = False,
        timeout: str | None = None,
        hang: str | None = None,
        poison: bool = False,
        replay: bool = False,
        idempotency_key: str | None = None,
        wait_seconds: float = 120,
    ) -> OrderResult:
        """Place an order and wait until its saga ends (or its poisoned record is dead-lettered).

        ``items`` are (product id, quantity) pairs; by default one unit of a new product of its
        own, so its stock tells exactly what this order did. Faults take the CLI's vocabulary.
        """
        require_demo(self.settings, "order")
        lines = items or [(self.make_product(), 1)]
        faults = _faults(fail, flaky, duplicate_delivery, crash_publisher, timeout, hang, poison)
        request = OrderRequest(
            customer or f"test-{uuid.uuid4().hex[:8]}",
            tuple({"productId": product, "quantity": quantity} for product, quantity in lines),
            faults,
            idempotency_key,
        )
        before = {product: self.stock_of(product) for product, _ in lines}
        run = run_order(self.orders, request, wait_seconds=wait_seconds, replay=replay,
                        local=(self.stack, self.region))  # fmt: skip
        return OrderResult(self, run, before, is_stock_ours=items is None)

    def reset(self) -> dict[str, Any]:
        """Empty the tables and queues and reseed the demo inventory (no redeploy)."""
        return reset_stack(self.stack, self.region)

    def dead_letters(self) -> list[DeadLetter]:
        return list_dead_letters(self.stack, self.region)

    def trace(self, order_id: str) -> Trace:
        return trace_order(self.stack, self.settings, order_id)

    def _item(self, table_output: str, key: dict[str, Any]) -> dict[str, Any] | None:
        found = (
            self.client("dynamodb")
            .get_item(TableName=self.outputs[table_output], Key=key, ConsistentRead=True)
            .get("Item")
        )
        return plain_item(found) if found else None


def _faults(
    fail: str | None,
    flaky: dict[str, int] | None,
    duplicate_delivery: bool,
    crash_publisher: bool,
    timeout: str | None,
    hang: str | None,
    poison: bool,
) -> dict[str, Any] | None:
    for step in [fail, timeout, hang, *(flaky or {})]:
        if step is not None and step not in SAGA_STEPS:
            raise ValueError(f"unknown saga step {step!r}: choose one of {', '.join(SAGA_STEPS)}")
    faults = {"fail": fail, "flaky": flaky or None, "timeout": timeout, "hang": hang,
              "duplicateDelivery": duplicate_delivery or None, "poison": poison or None,
              "crash": "publisher" if crash_publisher else None}  # fmt: skip
    return {key: value for key, value in faults.items() if value is not None} or None


@dataclass
class OrderResult:
    """An order placed by a test, how its saga ended, and the stock of its products before it."""

    sandbox: SandboxStack
    run: OrderRun
    stock_before: dict[str, int]
    is_stock_ours: bool = False  # its products are its own: their stock reflects this order alone

    @property
    def order_id(self) -> str:
        return self.run.order_id

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def failure_reason(self) -> str | None:
        return (self.run.final or {}).get("failureReason")

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list((self.run.final or {}).get("steps", []))

    @property
    def compensations(self) -> list[str]:
        return list((self.run.final or {}).get("compensations", []))

    @cached_property
    def trace(self) -> Trace:
        """The order's timeline, read once from the engine."""
        return self.sandbox.trace(self.order_id)

    def fail(self, problem: str) -> SagaAssertionError:
        """The error to raise: the problem, then the order's trace."""
        return SagaAssertionError(f"order {self.order_id}: {problem}\n\n{render_text(self.trace)}")


def assert_completed(result: OrderResult) -> None:
    """The saga completed the order."""
    if result.status != "COMPLETED":
        reason = f" ({result.failure_reason})" if result.failure_reason else ""
        raise result.fail(f"expected COMPLETED, the order is {result.status}{reason}")


def assert_failed(result: OrderResult, reason: str | None = None) -> None:
    """The saga failed the order, for a reason starting with ``reason`` when one is given."""
    if result.status != "FAILED":
        raise result.fail(f"expected FAILED, the order is {result.status}")
    if reason is not None and not (result.failure_reason or "").startswith(reason):
        raise result.fail(f"expected a failure starting {reason!r}, the reason is {result.failure_reason!r}")


def assert_compensated(result: OrderResult, compensations: list[str]) -> None:
    """These compensations ran, in this order (``[]``: none ran)."""
    if result.compensations != compensations:
        raise result.fail(f"expected compensations {compensations}, the saga ran {result.compensations}")


def assert_exactly_once(result: OrderResult) -> None:
    """One saga execution (replays aside), and every effect once or undone: charge, shipment, stock.

    A COMPLETED order holds one charge for its total, one shipment and one reservation; a FAILED
    one holds none of them (each is undone or never happened). The stock of the order's own
    products (the default items) moved by exactly its quantities, or not at all.
    """
    sandbox, order_id = result.sandbox, result.order_id
    names = [execution["name"] for execution in executions_of(sandbox.stack, sandbox.region, order_id)]
    if names.count(order_id) != 1:
        raise result.fail(f"expected one saga execution named after the order, found {names}")
    is_completed = result.status == "COMPLETED"
    key = {"orderId": {"S": order_id}}
    for table, held in HELD.items():
        if table not in sandbox.outputs:
            continue
        item = sandbox._item(table, key)
        status = (item or {}).get("status")
        if is_completed and status != held:
            raise result.fail(f"{table.removesuffix('TableName').lower()}: expected {held}, found {status}")
        if not is_completed and status == held:
            raise result.fail(f"{result.status} but {table.removesuffix('TableName').lower()} still {held}")
    payment = sandbox._item("PaymentsTableName", key)
    total = (result.run.final or {}).get("totalAmount")
    if is_completed and payment and Decimal(str(payment["amount"])) != Decimal(str(total)):
        raise result.fail(f"charged {payment['amount']}, the order's total is {total}")
    if result.is_stock_ours:
        for line in result.run.request.items:
            product, quantity = line["productId"], int(line["quantity"])
            expected = result.stock_before[product] - (quantity if is_completed else 0)
            if (actual := sandbox.stock_of(product)) != expected:
                raise result.fail(f"stock of {product}: expected {expected}, found {actual}")


def assert_no_dead_letters(sandbox: SandboxStack, *results: OrderResult) -> None:
    """Nothing in the outbox's on-failure queue (of these orders, when some are given)."""
    wanted = {result.order_id for result in results}
    letters = [letter for letter in sandbox.dead_letters() if not wanted or wanted & set(letter.order_ids)]
    if letters:
        listed = "; ".join(f"{', '.join(letter.order_ids)} ({letter.condition})" for letter in letters)
        raise SagaAssertionError(f"the outbox's on-failure queue holds {listed}")
