"""Saga tests of your own project: run a state machine (or, on the demo, place an order), then assert.

The pytest plugin (``sandbox.pytest_plugin``) hands these out as fixtures: ``sandbox_stack`` is a
``SandboxStack`` of any template (``execute``, ``outputs``, ``client``, ``trace_text``), whose
``execute`` returns an ``Execution`` (status, output, error, the states it ran, attempts,
compensations, injected faults, its trace) and takes ``faults`` for that execution alone;
``sandbox_faults`` adds fault rules for one test. ``assert_succeeded``, ``assert_failed``,
``assert_states`` and ``assert_compensated`` fail with a message a person can act on, followed by
the execution's trace. On the order demo, ``place_order`` calls ``SandboxStack.place``, and the
same assertions take its ``OrderResult`` (followed by the order's timeline).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.dlq import DeadLetter, list_dead_letters
from sandbox.executions import ExecutionResult
from sandbox.faults import Attempts, FaultSpec, add_faults, fault_book, faults_for_execution, read_plan
from sandbox.items import plain_item
from sandbox.orders import SAGA_STEPS, OrdersClient
from sandbox.runs import OrderRequest, OrderRun, run_order
from sandbox.saga import executions_of
from sandbox.saga_chaos import ChaosContext, SagaChaosConfig, SagaChaosReport
from sandbox.settings import Settings
from sandbox.stack import LocalStack, require_demo, reset_stack
from sandbox.trace import (
    ExecutionTrace,
    Trace,
    render_execution_text,
    render_text,
    trace_execution,
    trace_order,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

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
        faults: Sequence[str | FaultSpec] = (),
    ) -> Execution:
        """Start an execution of one of the stack's state machines (logical id, name or ARN; None: the
        only one) and wait until it ends.

        ``faults`` break steps of this execution alone: ``"TARGET:KIND[:ATTEMPTS]"`` as
        `sandbox execute --fault` takes them, or ``FaultSpec``s; their rules go once it ended.
        """
        from sandbox.executions import run_execution

        specs = [FaultSpec.parse_flag(spec) if isinstance(spec, str) else spec for spec in faults]
        stack, region, stack_name = self.stack, self.region, self.settings.stack_name
        with faults_for_execution(stack, region, stack_name, specs, name, prefix="test") as named:
            result = run_execution(stack, region, stack_name, state_machine, input, name=named,
                                   wait_seconds=wait_seconds)  # fmt: skip
        return Execution.of(result, self)

    def chaos(
        self,
        state_machine: str | None = None,
        *,
        inputs: Callable[..., Any],
        invariants: Sequence[Callable[[ChaosContext], Iterable[str]]] = (),
        config: SagaChaosConfig | None = None,
    ) -> SagaChaosReport:
        """A chaos run of one of the stack's state machines (see ``sandbox.saga_chaos``): ``inputs(i)``
        (or ``inputs(i, context)``) gives the i-th execution's input; each invariant gets the run and
        returns its violations."""
        from sandbox.executions import resolve_state_machine
        from sandbox.saga_chaos import bind_inputs, new_run_id, plan_saga_chaos, run_saga_chaos
        from sandbox.trace.execution_reading import read_definition

        config = config or SagaChaosConfig()
        machine = resolve_state_machine(self.stack, self.region, self.settings.stack_name, state_machine)
        definition = read_definition(self.client("stepfunctions"), machine.arn) or {}
        context = ChaosContext(self.stack, self.region, dict(self.outputs), ())
        plan = plan_saga_chaos(definition, bind_inputs(inputs, context), config, new_run_id())
        checks = [(getattr(check, "__name__", repr(check)), check) for check in invariants]
        return run_saga_chaos(self.stack, self.region, machine, definition, plan, config, checks)

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


@dataclass(frozen=True)
class Execution(ExecutionResult):
    """An execution a test ran: how it ended, and (read once, when asked) its trace."""

    sandbox: SandboxStack | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, result: ExecutionResult, sandbox: SandboxStack) -> Execution:
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)}, sandbox=sandbox)

    @cached_property
    def trace(self) -> ExecutionTrace:
        """Every state it entered, each task's attempts with errors, Catch routes, log lines, injected faults."""
        if self.sandbox is None:
            raise ValueError("this execution was not run through a SandboxStack: it has no trace to read")
        sandbox = self.sandbox
        return trace_execution(sandbox.stack, sandbox.region, sandbox.settings.stack_name, self.arn)

    @property
    def attempts(self) -> dict[str, int]:
        """Attempts of each task state it ran (a state entered twice counts both visits)."""
        counts: dict[str, int] = {}
        for state in self.trace.states:
            if state.attempts:
                counts[state.name] = counts.get(state.name, 0) + len(state.attempts)
        return counts

    @property
    def compensations(self) -> list[str]:
        """The compensation states that ran, in order."""
        return self.trace.compensations

    @property
    def injected_faults(self) -> list[dict[str, Any]]:
        """The faults the engine injected into its task attempts (rule, kind, state, attempt)."""
        return self.trace.injected_faults

    @property
    def trace_text(self) -> str:
        return render_execution_text(self.trace)

    def fail(self, problem: str) -> SagaAssertionError:
        """The error to raise: the problem, then the execution's trace."""
        return SagaAssertionError(f"execution {self.name}: {problem}\n\n{self.trace_text}")


class FaultRules:
    """Fault rules a test adds (``sandbox_faults``); the fixture clears them after the test."""

    def __init__(self, sandbox: SandboxStack) -> None:
        self.sandbox = sandbox
        self.rule_ids: list[str] = []

    def add(self, target: str, kind: str, *, attempts: str = "all", **fields: Any) -> dict[str, Any]:
        """Add one rule (``FaultSpec``'s fields: execution, record, percent, seed, duration_seconds,
        error, cause, delay_ms, status, run_handler); the rule as the engine lists it."""
        (rule,) = self.add_specs([FaultSpec(target, kind, Attempts.parse(attempts), **fields)])
        return rule

    def add_specs(self, specs: Sequence[FaultSpec]) -> list[dict[str, Any]]:
        sandbox = self.sandbox
        added = add_faults(sandbox.stack, sandbox.region, sandbox.settings.stack_name, list(specs))
        self.rule_ids += [rule["id"] for rule in added]
        return added

    def load(self, plan: str | Path) -> list[dict[str, Any]]:
        """Add every rule of a fault plan file."""
        return self.add_specs(read_plan(Path(plan)))

    def injections(self, execution: str | None = None) -> list[dict[str, Any]]:
        """What the engine injected (into one execution, by name, when given)."""
        return fault_book(self.sandbox.stack).injections(execution)

    def clear(self) -> None:
        """Remove the rules this test added (others' stay)."""
        fault_book(self.sandbox.stack).clear_rules(self.rule_ids)
        self.rule_ids = []


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

    @cached_property
    def execution(self) -> Execution:
        """The order's saga execution (named after the order), for the execution assertions."""
        from sandbox.executions import read_execution, resolve_state_machine

        sandbox = self.sandbox
        names = executions_of(sandbox.stack, sandbox.region, self.order_id)
        own = next((e for e in names if e["name"] == self.order_id), None)
        if own is None:
            raise self.fail("no saga execution is named after the order")
        machine = resolve_state_machine(sandbox.stack, sandbox.region, sandbox.settings.stack_name, None)
        sfn = sandbox.client("stepfunctions")
        return Execution.of(read_execution(sfn, own["executionArn"], machine), sandbox)

    def fail(self, problem: str) -> SagaAssertionError:
        """The error to raise: the problem, then the order's trace."""
        return SagaAssertionError(f"order {self.order_id}: {problem}\n\n{render_text(self.trace)}")


def assert_succeeded(execution: Execution) -> None:
    """The execution succeeded."""
    if execution.status != "SUCCEEDED":
        error = f" ({execution.error}: {execution.cause})" if execution.error else ""
        raise execution.fail(f"expected SUCCEEDED, the execution {execution.status}{error}")


def assert_states(execution: Execution, states: Sequence[str]) -> None:
    """It entered exactly these states, in this order (a retried state counts once per entry)."""
    if execution.states != list(states):
        raise execution.fail(f"expected the states {list(states)}, it ran {execution.states}")


def assert_completed(result: OrderResult) -> None:
    """The saga completed the order."""
    if result.status != "COMPLETED":
        reason = f" ({result.failure_reason})" if result.failure_reason else ""
        raise result.fail(f"expected COMPLETED, the order is {result.status}{reason}")


def assert_failed(result: Execution | OrderResult, error: str | None = None) -> None:
    """The execution failed (with this error name, when given); an order: the saga failed it, for a
    reason starting with ``error`` when one is given."""
    if isinstance(result, Execution):
        if result.status != "FAILED":
            raise result.fail(f"expected FAILED, the execution {result.status}")
        if error is not None and result.error != error:
            raise result.fail(f"expected the error {error!r}, it failed with {result.error!r}")
        return
    reason = error
    if result.status != "FAILED":
        raise result.fail(f"expected FAILED, the order is {result.status}")
    if reason is not None and not (result.failure_reason or "").startswith(reason):
        raise result.fail(f"expected a failure starting {reason!r}, the reason is {result.failure_reason!r}")


def assert_compensated(result: Execution | OrderResult, compensations: Sequence[str]) -> None:
    """These compensations ran, in this order (``[]``: none ran)."""
    if result.compensations != list(compensations):
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
