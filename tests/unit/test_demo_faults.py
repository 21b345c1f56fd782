"""The demo's faults as fault rules: each `sandbox order` flag becomes rules scoped to one order,
which the engine's fault book applies to exactly the attempts the flag names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from order_api import orders as service_orders
from sandbox.demo_faults import (
    ORDER_ID_NAMESPACE,
    ORDER_RULE_SECONDS,
    PUBLISHER,
    STEP_STATES,
    TRANSIENT_ERROR,
    OrderFaults,
    order_fault_specs,
    order_id_for_key,
    require_local_faults,
)
from sandbox.engine_patches.faults import DEFAULT_ERROR, TASK_CALL, FaultBook, TaskCall, apply_rule
from sandbox.engine_patches.streams import STREAM_DELIVERY, StreamDelivery
from sandbox.errors import UsageError
from sandbox.faults import Attempts, FaultSpec, StackTargets
from sandbox.orders import SAGA_STEPS

ORDER_ID = "3c9f0d2e-0000-5000-8000-00000000a001"
OTHER_ORDER = "3c9f0d2e-0000-5000-8000-00000000b002"
PUBLISHER_NAME = "saga-sandbox-OutboxPublisherFunction-x1"


# ---------------------------------------------------------------- the order's id, known before it is placed


def test_the_sandbox_names_an_order_as_the_order_api_does() -> None:
    # GIVEN the namespace each side derives order ids in
    assert ORDER_ID_NAMESPACE == service_orders.ORDER_ID_NAMESPACE
    # WHEN either side names the order of a key THEN both give the same id (the rules are set on it)
    for key in ("k1", "4f1e0c6a9b8d4e2f", "a key with spaces", "k" * 255, "clé-ünïcode"):
        assert order_id_for_key(key) == service_orders.order_id_for_key(key)


def test_an_order_id_is_a_uuid_of_its_key_and_differs_per_key() -> None:
    # GIVEN two keys WHEN naming their orders
    first, again, other = order_id_for_key("k1"), order_id_for_key("k1"), order_id_for_key("k2")
    # THEN one key always names one order, a UUID (version 5), and another key another order
    assert first == again != other
    assert uuid.UUID(first).version == 5


# ---------------------------------------------------------------- one flag, its rules


def only_spec(faults: dict[str, Any]) -> FaultSpec:
    (spec,) = order_fault_specs(faults, ORDER_ID)
    return spec


@pytest.mark.parametrize("faults", [None, {}])
def test_an_order_without_faults_gets_no_rule(faults: dict[str, Any] | None) -> None:
    assert order_fault_specs(faults, ORDER_ID) == []


@pytest.mark.parametrize(("step", "state"), list(STEP_STATES.items()))
def test_fail_errors_every_attempt_of_the_steps_state_in_the_orders_execution(step: str, state: str) -> None:
    spec = only_spec({"fail": step})
    # THEN the step's Task state fails before its handler runs, on every attempt, for this order only
    assert (spec.target, spec.kind, spec.attempts) == (state, "error", Attempts())
    assert (spec.execution, spec.record) == (ORDER_ID, None)
    # AND with the engine's default error and the cause the order's failure reason shows
    assert spec.error is None
    assert spec.cause == f"injected failure in {step}"


@pytest.mark.parametrize("count", [1, 2, 3])
def test_flaky_fails_the_first_n_attempts_with_a_transient_lambda_error(count: int) -> None:
    spec = only_spec({"flaky": {"payment": count}})
    assert (spec.target, spec.kind, spec.attempts) == ("ChargePayment", "error", Attempts(1, count))
    assert spec.error == TRANSIENT_ERROR == "Lambda.ServiceException"
    assert (spec.execution, spec.record) == (ORDER_ID, None)


def test_flaky_on_several_steps_gives_each_its_own_rule() -> None:
    specs = order_fault_specs({"flaky": {"inventory": 1, "shipping": 2}}, ORDER_ID)
    assert [(s.target, s.attempts) for s in specs] == [
        ("ReserveInventory", Attempts(1, 1)),
        ("CreateShipment", Attempts(1, 2)),
    ]


@pytest.mark.parametrize(("flag", "attempts"), [("timeout", Attempts(1, 1)), ("hang", Attempts())])
def test_timeout_outlives_the_first_attempt_and_hang_every_attempt(flag: str, attempts: Attempts) -> None:
    spec = only_spec({flag: "shipping"})
    assert (spec.target, spec.kind, spec.attempts) == ("CreateShipment", "timeout", attempts)
    assert (spec.execution, spec.record) == (ORDER_ID, None)


@pytest.mark.parametrize(
    ("faults", "kind", "attempts"),
    [
        ({"duplicateDelivery": True}, "duplicate-delivery", Attempts(1, 1)),
        ({"crash": "publisher"}, "crash", Attempts(1, 1)),
        ({"poison": True}, "poison", Attempts()),
    ],
)
def test_publisher_faults_target_the_orders_outbox_record(
    faults: dict[str, Any], kind: str, attempts: Attempts
) -> None:
    spec = only_spec(faults)
    # THEN the rule is on the publisher, for the record keyed OUTBOX#<orderId>, not an execution
    assert (spec.target, spec.kind, spec.attempts) == (PUBLISHER, kind, attempts)
    assert (spec.execution, spec.record) == (None, ORDER_ID)


def test_every_rule_lapses_so_an_order_never_followed_leaves_none_behind() -> None:
    every_flag = {"fail": "inventory", "flaky": {"payment": 1}, "timeout": "shipping", "hang": "payment",
                  "duplicateDelivery": True, "crash": "publisher", "poison": True}  # fmt: skip
    specs = order_fault_specs(every_flag, ORDER_ID)
    assert len(specs) == 7
    assert {spec.duration_seconds for spec in specs} == {ORDER_RULE_SECONDS}


def test_the_demo_knows_a_state_for_every_saga_step() -> None:
    assert tuple(STEP_STATES) == SAGA_STEPS


# ---------------------------------------------------------------- the rules, against the demo's stack


@pytest.fixture
def demo_targets(asl: dict[str, Any], template: dict[str, Any]) -> StackTargets:
    """What the demo stack lets rules target: its Task states and functions (names as deployed)."""
    tasks = frozenset(name for name, state in asl["States"].items() if state["Type"] == "Task")
    functions = {
        logical_id: f"saga-sandbox-{logical_id}-x1"
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    return StackTargets(tasks, functions, {})


def test_every_demo_rule_resolves_against_the_demo_template(demo_targets: StackTargets) -> None:
    # GIVEN every flag at once WHEN its rules are resolved against the deployed demo
    every_flag = {"fail": "inventory", "flaky": {"payment": 1}, "timeout": "shipping", "hang": "payment",
                  "duplicateDelivery": True, "crash": "publisher", "poison": True}  # fmt: skip
    rules = [demo_targets.engine_rule(spec) for spec in order_fault_specs(every_flag, ORDER_ID)]
    # THEN each names a Task state of the saga or the publisher function, as the engine takes it
    assert [rule["target"] for rule in rules] == [
        {"state": "ReserveInventory"},
        {"state": "ChargePayment"},
        {"state": "CreateShipment"},
        {"state": "ChargePayment"},
        *[{"function": PUBLISHER_NAME}] * 3,
    ]


@contextmanager
def in_task(state: str, execution: str, attempt: int) -> Iterator[None]:
    context = {"State": {"Name": state, "RetryCount": attempt - 1}, "Execution": {"Name": execution}}
    token = TASK_CALL.set(TaskCall(state, "OrderSaga", execution, context, 5.0))
    try:
        yield
    finally:
        TASK_CALL.reset(token)


def engine_book(targets: StackTargets, faults: dict[str, Any]) -> FaultBook:
    book = FaultBook()
    book.add([targets.engine_rule(spec) for spec in order_fault_specs(faults, ORDER_ID)])
    return book


def broken_attempts(book: FaultBook, state: str, execution: str = ORDER_ID) -> list[int]:
    """Which of attempts 1-4 of ``state`` a rule of the book fires on."""
    fired = []
    for attempt in range(1, 5):
        with in_task(state, execution, attempt):
            if book.choose(f"fn-of-{state}", {"order": {"orderId": execution}}) is not None:
                fired.append(attempt)
    return fired


def test_flaky_breaks_exactly_its_first_attempts_in_this_orders_saga(demo_targets: StackTargets) -> None:
    # GIVEN the rules of an order whose payment is flaky for 2 attempts, in the engine's book
    book = engine_book(demo_targets, {"flaky": {"payment": 2}})
    # THEN its ChargePayment fails attempts 1 and 2, and the third (a retry) goes through
    assert broken_attempts(book, "ChargePayment") == [1, 2]
    # AND no other state of the saga, and no other order's saga, is touched
    assert broken_attempts(book, "ReserveInventory") == []
    assert broken_attempts(book, "RefundPayment") == []
    assert broken_attempts(book, "ChargePayment", OTHER_ORDER) == []


def test_fail_breaks_every_attempt_and_never_the_compensation(demo_targets: StackTargets) -> None:
    book = engine_book(demo_targets, {"fail": "payment"})
    assert broken_attempts(book, "ChargePayment") == [1, 2, 3, 4]
    assert broken_attempts(book, "RefundPayment") == []
    assert broken_attempts(book, "ReleaseInventory") == []


def test_fail_answers_the_error_and_reason_the_order_fails_with(demo_targets: StackTargets) -> None:
    # GIVEN an order whose shipping fails WHEN its CreateShipment is invoked through the engine
    book = engine_book(demo_targets, {"fail": "shipping"})
    with in_task("CreateShipment", ORDER_ID, 1):
        chosen = book.choose("fn-of-CreateShipment", {})
    assert chosen is not None
    ran: list[Any] = []
    answer = apply_rule(*chosen, lambda func, event: ran.append(event) or {}, {}, {})
    # THEN the handler never ran, and the saga sees InjectedFault: injected failure in shipping
    assert ran == []
    assert answer["error"] is True
    assert answer["body"] == {"errorType": DEFAULT_ERROR, "errorMessage": "injected failure in shipping"}
    assert DEFAULT_ERROR == "InjectedFault"


def test_fail_wins_over_flaky_on_the_same_step(demo_targets: StackTargets) -> None:
    # GIVEN both on payment: the engine applies the first rule that fires, in the order they were set
    book = engine_book(demo_targets, {"fail": "payment", "flaky": {"payment": 1}})
    with in_task("ChargePayment", ORDER_ID, 1):
        chosen = book.choose("fn-of-ChargePayment", {})
    # THEN the permanent failure is what the step meets
    assert chosen is not None and chosen[0].kind == "error" and chosen[0].error is None


def outbox_batch(*order_ids: str) -> dict[str, Any]:
    return {
        "Records": [
            {"eventSource": "aws:dynamodb",
             "dynamodb": {"Keys": {"pk": {"S": f"OUTBOX#{order_id}"}, "sk": {"S": "OUTBOX"}},
                          "NewImage": {"pk": {"S": f"OUTBOX#{order_id}"}, "orderId": {"S": order_id}}}}
            for order_id in order_ids
        ]
    }  # fmt: skip


def test_a_publisher_rule_fires_on_a_batch_holding_the_orders_record_only(demo_targets: StackTargets) -> None:
    # GIVEN a poisoned order's rule in the engine's book
    book = engine_book(demo_targets, {"poison": True})
    token = STREAM_DELIVERY.set(StreamDelivery("outbox-mapping", 1))
    try:
        # THEN a batch with another order's record only passes, a batch with its record is poisoned
        assert book.choose(PUBLISHER_NAME, outbox_batch(OTHER_ORDER)) is None
        chosen = book.choose(PUBLISHER_NAME, outbox_batch(OTHER_ORDER, ORDER_ID))
    finally:
        STREAM_DELIVERY.reset(token)
    assert chosen is not None and chosen[0].kind == "poison"


# ---------------------------------------------------------------- setting the rules


class NoStack:
    """A stack that must not be asked anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the stack was asked for {name}")


def test_orders_without_faults_set_no_rule_and_ask_the_stack_nothing() -> None:
    order_faults = OrderFaults(NoStack(), "us-east-1")  # type: ignore[arg-type]
    assert order_faults.add([(ORDER_ID, None), (OTHER_ORDER, {})]) == []


def test_faults_need_the_local_engine() -> None:
    with pytest.raises(UsageError, match="AWS has no such hook") as raised:
        require_local_faults(None)
    assert "sandbox faults export --fis" in (raised.value.hint or "")
