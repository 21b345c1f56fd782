"""Fault rules at the Lambda invoke boundary, as the engine patch parses, selects and applies them."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sandbox.engine_patches.faults import (
    COLD_STARTING,
    CRASHING,
    ROUTE,
    TASK_CALL,
    FaultBook,
    FaultRule,
    FaultRuleError,
    TaskCall,
    apply_rule,
    handle_request,
    with_fault_route,
    with_faults,
    with_task_calls,
    with_worker_faults,
)
from sandbox.engine_patches.streams import STREAM_DELIVERY, StreamDelivery
from sandbox.engine_patches.timeouts import HANDLER_STARTED
from sandbox.engine_patches.zygotes import FROM_SCRATCH

FUNC = {"config": {"FunctionName": "pay-fn", "Timeout": 3}}
HANDLER_RESULT = {"body": {"ok": True}, "log": "handler log line"}


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeExecute:
    """The engine's invoke: records each call and answers a fixed result."""

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        self.result = HANDLER_RESULT if result is None else result
        self.calls: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, func: Any, event: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((func, event, args, kwargs))
        return dict(self.result)


def task_call(
    state: str = "ChargePayment",
    execution: str = "order-1",
    retry: int = 0,
    timeout_seconds: float | None = None,
) -> TaskCall:
    context = {"State": {"Name": state, "RetryCount": retry}, "Execution": {"Name": execution}}
    return TaskCall(state, "OrderSaga", execution, context, timeout_seconds)


@contextmanager
def in_task(call: TaskCall) -> Iterator[TaskCall]:
    token = TASK_CALL.set(call)
    try:
        yield call
    finally:
        TASK_CALL.reset(token)


@contextmanager
def in_delivery(mapping: str, attempt: int = 1) -> Iterator[None]:
    token = STREAM_DELIVERY.set(StreamDelivery(mapping, attempt))
    try:
        yield
    finally:
        STREAM_DELIVERY.reset(token)


def outbox_event(*ids: str) -> dict[str, Any]:
    """A DynamoDB stream batch of outbox records keyed ``OUTBOX#<id>``."""
    return {
        "Records": [
            {
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "Keys": {"pk": {"S": f"OUTBOX#{id_}"}},
                    "NewImage": {"pk": {"S": f"OUTBOX#{id_}"}, "orderId": {"S": id_}, "amount": {"N": "10"}},
                },
            }
            for id_ in ids
        ]
    }


def rule(kind: str, target: dict[str, str] | None = None, **extra: Any) -> FaultRule:
    raw = {"target": target or {"function": "pay-fn"}, "kind": kind, **extra}
    return FaultRule.parse(raw, "f1", 0.0)


def book_with(*rules: dict[str, Any], clock: FakeClock | None = None) -> FaultBook:
    book = FaultBook(clock=clock) if clock else FaultBook()
    book.add(list(rules))
    return book


def fires(book: FaultBook, function: str = "pay-fn", event: Any = None) -> int | None:
    """The attempt a rule fires on for this invocation, or None."""
    chosen = book.choose(function, {} if event is None else event)
    return None if chosen is None else chosen[1]


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("error", "JSON object"),
        ({"target": {"state": "S"}, "kind": "explode"}, "kind"),
        ({"target": {"state": "S"}}, "kind"),
        ({"target": "S", "kind": "error"}, "target"),
        ({"target": {"state": "S", "function": "f"}, "kind": "error"}, "target"),
        ({"target": {"queue": "q"}, "kind": "error"}, "target"),
        ({"target": {"state": ""}, "kind": "error"}, "target"),
        ({"target": {"state": 3}, "kind": "error"}, "target"),
        ({"target": {"state": "S"}, "kind": "poison"}, "not to a state"),
        ({"target": {"state": "S"}, "kind": "duplicate-delivery"}, "not to a state"),
        ({"target": {"state": "S"}, "kind": "delayed-delivery", "delayMs": 5}, "not to a state"),
        ({"target": {"state": "S"}, "kind": "error", "attempts": [0, None]}, "attempts"),
        ({"target": {"state": "S"}, "kind": "error", "attempts": [3, 2]}, "attempts"),
        ({"target": {"state": "S"}, "kind": "error", "attempts": [1]}, "attempts"),
        ({"target": {"state": "S"}, "kind": "error", "attempts": "1-2"}, "attempts"),
        ({"target": {"state": "S"}, "kind": "error", "attempts": [True, None]}, "attempts"),
        ({"target": {"state": "S"}, "kind": "error", "percent": 0}, "percent"),
        ({"target": {"state": "S"}, "kind": "error", "percent": 100.5}, "percent"),
        ({"target": {"state": "S"}, "kind": "error", "percent": -1}, "percent"),
        ({"target": {"state": "S"}, "kind": "error", "percent": "50"}, "percent"),
        ({"target": {"state": "S"}, "kind": "error", "percent": True}, "percent"),
        ({"target": {"state": "S"}, "kind": "error", "durationSeconds": 0}, "durationSeconds"),
        ({"target": {"state": "S"}, "kind": "error", "durationSeconds": "5"}, "durationSeconds"),
        ({"target": {"state": "S"}, "kind": "delay"}, "delayMs"),
        ({"target": {"state": "S"}, "kind": "delay", "delayMs": 0}, "delayMs"),
        ({"target": {"state": "S"}, "kind": "delay", "delayMs": -5}, "delayMs"),
        ({"target": {"state": "S"}, "kind": "delay", "delayMs": 1.5}, "delayMs"),
        ({"target": {"mapping": "m"}, "kind": "delayed-delivery"}, "delayMs"),
        ({"target": {"state": "S"}, "kind": "http-response"}, "status"),
        ({"target": {"state": "S"}, "kind": "http-response", "status": 600}, "status"),
        ({"target": {"state": "S"}, "kind": "http-response", "status": 99}, "status"),
        ({"target": {"state": "S"}, "kind": "error-after", "runHandler": True}, "runHandler"),
        (
            {"target": {"state": "S"}, "kind": "http-response", "status": 503, "runHandler": "yes"},
            "runHandler",
        ),
        ({"target": {"state": "S"}, "kind": "error", "seed": -1}, "seed"),
        ({"target": {"state": "S"}, "kind": "error", "execution": ""}, "execution"),
        ({"target": {"state": "S"}, "kind": "error", "record": 42}, "record"),
        ({"target": {"state": "S"}, "kind": "error", "error": ""}, "error"),
        ({"target": {"state": "S"}, "kind": "error", "cause": ["x"]}, "cause"),
        ({"target": {"state": "S"}, "kind": "error", "label": 3}, "label"),
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field(raw: Any, named: str) -> None:
    # GIVEN a rule with one thing wrong
    # WHEN the engine parses it
    with pytest.raises(FaultRuleError) as refused:
        FaultRule.parse(raw, "f1", 0.0)
    # THEN the message names what is wrong
    assert named in str(refused.value)


def test_a_valid_rule_is_parsed_with_its_defaults_and_scope() -> None:
    # GIVEN a rule with a range, a scope, a duration and a named error
    raw = {
        "target": {"state": "ChargePayment"},
        "kind": "error",
        "attempts": [1, 2],
        "execution": "order-1",
        "durationSeconds": 30,
        "error": "Lambda.ServiceException",
        "cause": "down",
    }
    # WHEN parsed at t=100
    parsed = FaultRule.parse(raw, "f7", 100.0)
    # THEN every field lands; the label defaults to the target's name; it expires 30 s on
    assert (parsed.id, parsed.label, parsed.first_attempt, parsed.last_attempt) == (
        "f7",
        "ChargePayment",
        1,
        2,
    )
    assert (parsed.execution, parsed.error, parsed.cause) == ("order-1", "Lambda.ServiceException", "down")
    assert parsed.expires_at == 130.0
    assert parsed.percent == 100.0
    assert parsed.to_json(110.0)["expiresInSeconds"] == 20.0


def test_attempts_without_a_last_mean_every_later_attempt() -> None:
    parsed = rule("error", attempts=[3, None])
    assert (parsed.first_attempt, parsed.last_attempt) == (3, None)
    assert not parsed.is_on(2)
    assert parsed.is_on(3) and parsed.is_on(300)


# -------------------------------------------------------------------------- the book


def test_add_is_all_or_none() -> None:
    # GIVEN a book with one rule
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error"})
    # WHEN a batch with one valid and one invalid rule is added
    with pytest.raises(FaultRuleError, match=r"rule 2: kind 'explode'"):
        book.add(
            [
                {"target": {"function": "ship-fn"}, "kind": "error"},
                {"target": {"state": "S"}, "kind": "explode"},
            ]
        )
    # THEN the valid one was not added either
    assert [r["label"] for r in book.listed()] == ["pay-fn"]


@pytest.mark.parametrize("payload", [None, [], {"kind": "error"}, "rules"])
def test_add_wants_a_non_empty_list(payload: Any) -> None:
    with pytest.raises(FaultRuleError, match="at least one rule"):
        FaultBook().add(payload)


def test_add_answers_the_rules_with_their_ids_in_order() -> None:
    book = FaultBook()
    added = book.add(
        [{"target": {"function": "a"}, "kind": "error"}, {"target": {"function": "b"}, "kind": "throttle"}]
    )
    assert [(r["id"], r["label"], r["kind"]) for r in added] == [
        ("f1", "a", "error"),
        ("f2", "b", "throttle"),
    ]
    assert added[0]["attempts"] == [1, None]
    assert book.listed() == added


def test_clear_one_many_or_all_and_all_drops_the_injections() -> None:
    # GIVEN three rules and an injection made by the first
    book = book_with(*({"target": {"function": name}, "kind": "error"} for name in ("a", "b", "c")))
    assert fires(book, "a") == 1
    # WHEN one id and an unknown id are cleared
    assert book.clear(["f1", "f9"]) == 1
    # THEN only that rule went, and the injection it made is still readable
    assert [r["id"] for r in book.listed()] == ["f2", "f3"]
    assert len(book.injections()) == 1
    assert fires(book, "a") is None
    # WHEN the rest are cleared by id, then all
    assert book.clear(["f2", "f3"]) == 2
    assert book.listed() == []
    book.add([{"target": {"function": "d"}, "kind": "error"}])
    assert book.clear() == 1
    # THEN clearing all also forgot the injections
    assert book.injections() == []
    assert book.clear() == 0


def test_a_rule_expires_after_its_duration() -> None:
    # GIVEN a rule for 10 seconds, added at t=1000
    clock = FakeClock(1000.0)
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error", "durationSeconds": 10}, clock=clock)
    # WHEN time passes but the rule is still in force
    clock.now = 1009.5
    # THEN it is listed with the time it has left, and fires
    assert book.listed()[0]["expiresInSeconds"] == 0.5
    assert fires(book) == 1
    # WHEN its duration is over
    clock.now = 1010.0
    # THEN it neither fires nor is listed
    assert fires(book) is None
    assert book.listed() == []


def test_a_rule_without_duration_never_expires() -> None:
    clock = FakeClock(0.0)
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error"}, clock=clock)
    clock.now = 10**9
    assert fires(book) == 1
    assert book.listed()[0]["expiresInSeconds"] is None


# -------------------------------------------------------------------------- selection


def test_a_state_rule_selects_its_state_on_its_attempts_as_the_retry_count_moves() -> None:
    # GIVEN a rule on ChargePayment's second attempt only
    book = book_with({"target": {"state": "ChargePayment"}, "kind": "error", "attempts": [2, 2]})
    with in_task(task_call("ChargePayment", retry=0)) as call:
        # WHEN the Task invokes on its first attempt
        # THEN the rule does not fire
        assert fires(book) is None
        # WHEN the engine's retry moves the state's RetryCount (in place, as the engine does)
        call.context["State"]["RetryCount"] = 1
        # THEN the second attempt is broken
        assert fires(book) == 2
        call.context["State"]["RetryCount"] = 2
        assert fires(book) is None


def test_a_state_rule_ignores_other_states_and_calls_outside_a_task() -> None:
    book = book_with({"target": {"state": "ChargePayment"}, "kind": "error"})
    with in_task(task_call("ReserveInventory")):
        assert fires(book) is None
    assert fires(book) is None
    with in_task(task_call("ChargePayment")):
        assert fires(book) == 1


def test_a_function_rule_selects_by_function_name() -> None:
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error"})
    assert fires(book, "ship-fn") is None
    assert fires(book, "pay-fn") == 1
    with in_task(task_call("AnyState")):
        assert fires(book, "pay-fn") == 1


def test_a_mapping_rule_selects_its_mappings_deliveries_on_the_delivery_attempt() -> None:
    # GIVEN a rule on stream mapping uuid-1 from its second delivery on
    book = book_with({"target": {"mapping": "uuid-1"}, "kind": "error", "attempts": [2, None]})
    # THEN a call outside a delivery, or another mapping's delivery, is not selected
    assert fires(book, "publisher") is None
    with in_delivery("uuid-2", attempt=2):
        assert fires(book, "publisher") is None
    # AND its own delivery fires on the delivery's attempt, not the rule's count
    with in_delivery("uuid-1", attempt=1):
        assert fires(book, "publisher") is None
    with in_delivery("uuid-1", attempt=5):
        assert fires(book, "publisher") == 5


def test_a_stream_kind_on_a_function_needs_a_delivery() -> None:
    book = book_with({"target": {"function": "publisher"}, "kind": "poison"})
    assert fires(book, "publisher", outbox_event("1")) is None
    with in_delivery("uuid-1"):
        assert fires(book, "publisher", outbox_event("1")) == 1


def test_an_execution_scoped_rule_selects_that_execution_only() -> None:
    book = book_with({"target": {"state": "ChargePayment"}, "kind": "error", "execution": "order-1"})
    with in_task(task_call(execution="order-2")):
        assert fires(book) is None
    with in_task(task_call(execution="order-1")):
        assert fires(book) == 1
    function_rule = book_with({"target": {"function": "pay-fn"}, "kind": "error", "execution": "order-1"})
    assert fires(function_rule) is None  # no Task, so no execution to match


@pytest.mark.parametrize(
    ("record", "ids", "selected"),
    [
        ("42", ("42",), True),  # a #-separated part of the key
        ("OUTBOX#42", ("42",), True),  # the whole key
        ("42", ("7", "42"), True),  # one record of the batch is enough
        ("42", ("142",), False),  # a part, not a substring
        ("42", ("7",), False),
        ("OUTBOX", ("7",), True),
    ],
)
def test_a_record_scoped_rule_selects_deliveries_holding_that_key(
    record: str, ids: tuple[str, ...], selected: bool
) -> None:
    # GIVEN a rule on the stream mapping's records keyed with a text
    book = book_with({"target": {"mapping": "uuid-1"}, "kind": "error", "record": record})
    # WHEN the mapping delivers a batch
    with in_delivery("uuid-1"):
        chosen = fires(book, "publisher", outbox_event(*ids))
    # THEN the rule fires only when a record's key (or a part of it) is the text
    assert (chosen is not None) is selected


def test_a_record_scoped_rule_needs_a_delivery() -> None:
    book = book_with({"target": {"function": "publisher"}, "kind": "error", "record": "42"})
    assert fires(book, "publisher", outbox_event("42")) is None
    with in_delivery("uuid-1"):
        assert fires(book, "publisher", outbox_event("42")) == 1


def test_callers_without_a_task_or_delivery_count_attempts_by_the_rules_own_count() -> None:
    # GIVEN a rule on a function's second and third invocations (e.g. an API integration)
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error", "attempts": [2, 3]})
    # WHEN it is invoked four times, and another function in between
    chosen = [fires(book), fires(book, "ship-fn"), fires(book), fires(book), fires(book)]
    # THEN the rule counts only the invocations it matched
    assert chosen == [None, None, 2, 3, None]
    assert book.listed()[0]["matched"] == 4
    assert book.listed()[0]["injected"] == 2


def _draws(seed: int, count: int, percent: float = 30) -> list[bool]:
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error", "percent": percent, "seed": seed})
    return [fires(book) is not None for _ in range(count)]


def test_a_seeded_percentage_makes_the_same_choices_twice() -> None:
    # GIVEN two books with the same seeded 30% rule
    first, again = _draws(7, 200), _draws(7, 200)
    # THEN they break the same invocations, and not all or none of them
    assert first == again
    assert 0 < sum(first) < 200
    assert _draws(8, 200) != first


def test_a_percentage_breaks_about_that_share_of_invocations() -> None:
    draws = _draws(11, 4000, percent=25)
    assert 0.22 < sum(draws) / len(draws) < 0.28


def test_the_first_added_rule_wins() -> None:
    # GIVEN two rules on the same function
    book = book_with(
        {"target": {"function": "pay-fn"}, "kind": "error"},
        {"target": {"function": "pay-fn"}, "kind": "throttle"},
    )
    # THEN the first added fires; once it is cleared, the second
    chosen = book.choose("pay-fn", {})
    assert chosen is not None and (chosen[0].id, chosen[0].kind) == ("f1", "error")
    book.clear(["f1"])
    chosen = book.choose("pay-fn", {})
    assert chosen is not None and chosen[0].kind == "throttle"


def test_the_first_added_rule_wins_across_scoped_and_unscoped_rules() -> None:
    # GIVEN an execution-scoped rule added before an unscoped one, on the same state
    book = book_with(
        {"target": {"state": "ChargePayment"}, "kind": "error", "execution": "order-1"},
        {"target": {"state": "ChargePayment"}, "kind": "throttle"},
        {"target": {"mapping": "uuid-1"}, "kind": "poison", "record": "42"},
        {"target": {"mapping": "uuid-1"}, "kind": "error"},
    )
    # WHEN that execution's Task invokes
    with in_task(task_call(execution="order-1")):
        chosen = book.choose("pay-fn", {})
    # THEN the scoped rule wins (it was added first), though it sits in another index
    assert chosen is not None and chosen[0].id == "f1"
    with in_delivery("uuid-1"):
        chosen = book.choose("publisher", outbox_event("42"))
    assert chosen is not None and chosen[0].id == "f3"


def test_the_injections_log_records_where_each_fault_landed() -> None:
    # GIVEN rules on a state and a mapping
    book = book_with(
        {"target": {"state": "ChargePayment"}, "kind": "error", "label": "Charge"},
        {"target": {"mapping": "uuid-1"}, "kind": "duplicate-delivery"},
    )
    # WHEN each fires
    with in_task(task_call(execution="order-9", retry=1)):
        fires(book)
    with in_delivery("uuid-1", attempt=2):
        fires(book, "publisher", outbox_event("42"))
    # THEN the log says which rule, kind, state, execution, attempt, mapping and records
    state_entry, stream_entry = book.injections()
    assert {k: state_entry[k] for k in ("rule", "kind", "target", "function", "state", "stateMachine",
                                       "execution", "attempt", "mapping", "records")} == {
        "rule": "f1", "kind": "error", "target": "Charge", "function": "pay-fn", "state": "ChargePayment",
        "stateMachine": "OrderSaga", "execution": "order-9", "attempt": 2, "mapping": None, "records": [],
    }  # fmt: skip
    assert (stream_entry["mapping"], stream_entry["attempt"], stream_entry["execution"]) == (
        "uuid-1",
        2,
        None,
    )
    assert stream_entry["records"] == [json.dumps({"pk": {"S": "OUTBOX#42"}})]
    assert book.injections("order-9") == [state_entry]
    assert book.injections("order-0") == []


# ------------------------------------------------------------------------ applying a rule


def test_error_answers_an_error_and_never_runs_the_handler() -> None:
    execute = FakeExecute()
    answer = apply_rule(rule("error"), 1, execute, FUNC, {"a": 1})
    assert execute.calls == []
    assert answer["error"] is True
    assert answer["body"]["errorType"] == "InjectedFault"
    assert "did not run" in answer["body"]["errorMessage"]
    assert "rule f1 injected error on pay-fn (attempt 1)" in answer["log"]


def test_error_takes_the_name_and_cause_the_rule_sets() -> None:
    answer = apply_rule(
        rule("error", error="Lambda.ServiceException", cause="down"), 1, FakeExecute(), FUNC, {}
    )
    assert answer["body"] == {"errorType": "Lambda.ServiceException", "errorMessage": "down"}


def test_error_after_runs_the_handler_once_then_answers_an_error_keeping_its_log() -> None:
    # GIVEN a handler whose effect lands when it runs
    execute = FakeExecute()
    # WHEN an error-after rule applies
    answer = apply_rule(rule("error-after"), 2, execute, FUNC, {"a": 1})
    # THEN the handler ran once with the event, and the caller gets an error with the handler's log
    assert [(func, event) for func, event, _, _ in execute.calls] == [(FUNC, {"a": 1})]
    assert answer["error"] is True
    assert answer["body"]["errorType"] == "InjectedFault"
    assert "response was lost" in answer["body"]["errorMessage"]
    assert "handler log line" in answer["log"] and "(attempt 2)" in answer["log"]


def test_delay_runs_the_handler_after_the_delay_and_answers_its_result() -> None:
    execute = FakeExecute()
    answer = apply_rule(rule("delay", delayMs=1), 1, execute, FUNC, {"a": 1})
    assert len(execute.calls) == 1
    assert answer["body"] == {"ok": True}
    assert "injected delay" in answer["log"] and "handler log line" in answer["log"]


def test_delayed_delivery_runs_the_handler_once() -> None:
    execute = FakeExecute()
    answer = apply_rule(rule("delayed-delivery", {"mapping": "uuid-1"}, delayMs=1), 1, execute, FUNC, {})
    assert len(execute.calls) == 1
    assert answer["body"] == {"ok": True}


def test_throttle_is_refused_as_lambda_refuses_it() -> None:
    execute = FakeExecute()
    answer = apply_rule(rule("throttle"), 1, execute, FUNC, {})
    assert execute.calls == []
    assert answer["throttle"] is True and answer["error"] is True
    assert answer["body"]["errorType"] == "Lambda.TooManyRequestsException"
    assert answer["body"]["__type"] == "TooManyRequestsException"
    assert answer["body"]["message"] == "Rate Exceeded."


def test_http_response_answers_the_status_without_running_the_handler() -> None:
    execute = FakeExecute()
    answer = apply_rule(rule("http-response", status=503, cause="maintenance"), 1, execute, FUNC, {})
    assert execute.calls == []
    assert answer["body"]["statusCode"] == 503
    assert answer["body"]["headers"] == {"Content-Type": "application/json"}
    assert json.loads(answer["body"]["body"]) == {"message": "maintenance"}
    assert "error" not in answer


def test_http_response_with_run_handler_runs_it_then_replaces_its_answer() -> None:
    execute = FakeExecute()
    answer = apply_rule(rule("http-response", status=500, runHandler=True), 1, execute, FUNC, {"a": 1})
    assert len(execute.calls) == 1
    assert answer["body"]["statusCode"] == 500
    assert "handler log line" in answer["log"]


def test_duplicate_delivery_delivers_a_successful_batch_twice() -> None:
    execute = FakeExecute({"body": {"batchItemFailures": []}, "log": "delivered"})
    event = outbox_event("42")
    answer = apply_rule(rule("duplicate-delivery", {"mapping": "uuid-1"}), 1, execute, FUNC, event)
    assert [call[1] for call in execute.calls] == [event, event]
    assert answer["log"].count("delivered") == 2


def test_duplicate_delivery_does_not_repeat_a_failed_delivery() -> None:
    failed = {"error": True, "body": {"errorType": "Boom"}, "log": "failed"}
    execute = FakeExecute(failed)
    answer = apply_rule(
        rule("duplicate-delivery", {"mapping": "uuid-1"}), 1, execute, FUNC, outbox_event("42")
    )
    assert len(execute.calls) == 1
    assert answer == failed


def test_poison_spoils_the_non_key_image_of_the_selected_records_only() -> None:
    # GIVEN a batch of two outbox records and a poison rule on record 42
    event = outbox_event("42", "7")
    original = json.dumps(event)
    execute = FakeExecute()
    # WHEN the rule applies
    apply_rule(rule("poison", {"mapping": "uuid-1"}, record="42"), 1, execute, FUNC, event)
    # THEN the function got record 42 with its key kept and every other attribute unreadable
    ((_, delivered, _, _),) = execute.calls
    poisoned, untouched = delivered["Records"]
    assert poisoned["dynamodb"]["Keys"] == {"pk": {"S": "OUTBOX#42"}}
    assert poisoned["dynamodb"]["NewImage"]["pk"] == {"S": "OUTBOX#42"}
    assert poisoned["dynamodb"]["NewImage"]["orderId"] != {"S": "42"}
    assert poisoned["dynamodb"]["NewImage"]["amount"] != {"N": "10"}
    # AND record 7 as it was, and the caller's event unchanged
    assert untouched == event["Records"][1]
    assert json.dumps(event) == original


def test_a_poisoned_record_stays_poisoned_when_another_record_s_rule_decides_its_batch() -> None:
    # GIVEN a batch holding record 7, whose order has a duplicate-delivery rule (added first), and
    # record 42, whose order has a poison rule
    book = book_with(
        {"target": {"mapping": "uuid-1"}, "kind": "duplicate-delivery", "record": "7"},
        {"target": {"mapping": "uuid-1"}, "kind": "poison", "record": "42"},
    )
    event = outbox_event("7", "42")
    # WHEN the batch is delivered
    with in_delivery("uuid-1"):
        chosen = book.choose("publisher", event)
    assert chosen is not None
    rule_, attempt, also = chosen
    execute = FakeExecute()
    apply_rule(rule_, attempt, execute, FUNC, event, also)
    # THEN the duplicate delivery decides the batch, and record 42 is unreadable in both deliveries
    assert rule_.kind == "duplicate-delivery" and [r.kind for r in also] == ["poison"]
    assert len(execute.calls) == 2
    for _, delivered, _, _ in execute.calls:
        kept, poisoned = delivered["Records"]
        assert kept == event["Records"][0]
        assert poisoned["dynamodb"]["NewImage"]["orderId"] != {"S": "42"}


def test_poison_without_a_record_spoils_every_record() -> None:
    execute = FakeExecute()
    apply_rule(rule("poison", {"mapping": "uuid-1"}), 1, execute, FUNC, outbox_event("1", "2"))
    delivered = execute.calls[0][1]
    assert all(record["dynamodb"]["NewImage"]["orderId"] != {"S": str(n)}
               for n, record in enumerate(delivered["Records"], 1))  # fmt: skip


def test_crash_runs_the_handler_on_a_worker_marked_to_die_then_answers_exit_error() -> None:
    # GIVEN a handler that notes whether its worker is marked to crash
    marked: list[bool] = []

    def execute(func: Any, event: Any) -> dict[str, Any]:
        marked.append(CRASHING.get())
        return dict(HANDLER_RESULT)

    # WHEN a crash rule applies
    answer = apply_rule(rule("crash"), 1, execute, FUNC, {})
    # THEN the handler ran marked, the mark is gone after, and the caller gets Runtime.ExitError
    assert marked == [True]
    assert CRASHING.get() is False
    assert answer["error"] is True
    assert answer["body"]["errorType"] == "Runtime.ExitError"
    assert "handler log line" in answer["log"]


def test_timeout_in_a_task_starts_the_tasks_clock_then_runs_the_handler_late() -> None:
    # GIVEN a Task with TimeoutSeconds waiting for its handler's start
    started = threading.Event()
    started_when_run: list[bool] = []

    def execute(func: Any, event: Any) -> dict[str, Any]:
        started_when_run.append(started.is_set())
        return dict(HANDLER_RESULT)

    token = HANDLER_STARTED.set(started)
    try:
        with in_task(task_call(timeout_seconds=0.01)):
            # WHEN a timeout rule applies
            answer = apply_rule(rule("timeout"), 1, execute, FUNC, {})
    finally:
        HANDLER_STARTED.reset(token)
    # THEN the Task's clock was started before the handler ran, and the handler ran once, late
    assert started.is_set()
    assert started_when_run == [True]
    assert answer["body"] == {"ok": True}
    assert "injected timeout" in answer["log"]


@pytest.mark.parametrize("task", [None, task_call(timeout_seconds=None)])
def test_timeout_outside_a_timed_task_answers_timed_out_then_runs_the_handler_on_a_thread(
    task: TaskCall | None,
) -> None:
    # GIVEN a function with a tiny Timeout, and a handler that waits to see the caller answered
    answered, ran = threading.Event(), threading.Event()
    saw_answer: list[bool] = []
    threads: list[str] = []

    def execute(func: Any, event: Any) -> dict[str, Any]:
        saw_answer.append(answered.wait(timeout=10))
        threads.append(threading.current_thread().name)
        ran.set()
        return dict(HANDLER_RESULT)

    func = {"config": {"FunctionName": "pay-fn", "Timeout": 0.01}}
    # WHEN a timeout rule applies (in a Task without TimeoutSeconds, or outside any Task)
    token = TASK_CALL.set(task)
    try:
        answer = apply_rule(rule("timeout"), 1, execute, func, {})
    finally:
        TASK_CALL.reset(token)
    answered.set()
    # THEN the caller got Sandbox.Timedout after the function's Timeout
    assert answer["error"] is True
    assert answer["body"]["errorType"] == "Sandbox.Timedout"
    assert "0.01 seconds" in answer["body"]["errorMessage"]
    # AND the handler still ran, once, on another thread, after the caller had its answer
    assert ran.wait(timeout=10)
    assert saw_answer == [True]
    assert threads == ["late-invocation"]


# ----------------------------------------------------------------------- the invoke path


class NoChoosing(FaultBook):
    """A book that fails the test if the invoke path asks it to choose."""

    def choose(self, function_name: str, event: Any) -> tuple[FaultRule, int] | None:
        raise AssertionError("an empty book must not be consulted")


def test_with_an_empty_book_the_invoke_path_passes_through_untouched() -> None:
    execute = FakeExecute()
    result = with_faults(execute, NoChoosing())(FUNC, {"a": 1}, "extra", timeout=3)
    assert result == HANDLER_RESULT
    assert execute.calls == [(FUNC, {"a": 1}, ("extra",), {"timeout": 3})]


def test_an_unselected_invocation_passes_through_with_its_arguments() -> None:
    book = book_with({"target": {"function": "ship-fn"}, "kind": "error"})
    execute = FakeExecute()
    assert with_faults(execute, book)(FUNC, {"a": 1}, "extra", timeout=3) == HANDLER_RESULT
    assert execute.calls == [(FUNC, {"a": 1}, ("extra",), {"timeout": 3})]
    assert book.injections() == []


def test_a_selected_invocation_is_broken_and_the_handler_gets_its_arguments() -> None:
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error-after"})
    execute = FakeExecute()
    answer = with_faults(execute, book)(FUNC, {"a": 1}, "extra", timeout=3)
    assert answer["error"] is True
    assert execute.calls == [(FUNC, {"a": 1}, ("extra",), {"timeout": 3})]
    assert len(book.injections()) == 1


def test_a_re_entered_inner_call_is_not_faulted_a_second_time() -> None:
    # GIVEN an engine invoke that re-enters its own (patched) invoke path once, as the engine does
    book = book_with({"target": {"function": "pay-fn"}, "kind": "error-after"})
    handler = FakeExecute()
    inner_answers: list[dict[str, Any]] = []

    def engine_execute(func: Any, event: Any) -> dict[str, Any]:
        if event.get("reentered"):
            return handler(func, event)
        inner_answers.append(patched(func, {**event, "reentered": True}))
        return inner_answers[-1]

    patched = with_faults(engine_execute, book)
    # WHEN the function is invoked
    answer = patched(FUNC, {"a": 1})
    # THEN the outer call is broken once; the inner call ran the handler unbroken
    assert answer["error"] is True
    assert inner_answers == [HANDLER_RESULT]
    assert len(handler.calls) == 1
    assert len(book.injections()) == 1


def test_task_calls_tell_the_invoke_path_which_state_and_execution_invoke() -> None:
    # GIVEN the engine's Task execution, which invokes while the $$ context is set
    seen: list[TaskCall | None] = []

    def execute_task(state_def: Any, raw_input: Any, execution: Any, ctx: Any) -> str:
        seen.append(TASK_CALL.get())
        return "output"

    ctx = {"State": {"Name": "ChargePayment", "RetryCount": 1}, "StateMachine": {"Name": "OrderSaga"},
           "Execution": {"Name": "order-3"}}  # fmt: skip
    # WHEN a Task with TimeoutSeconds runs, then one with a TimeoutSecondsPath
    run = with_task_calls(execute_task)
    assert run({"TimeoutSeconds": 5}, {}, None, ctx) == "output"
    run({"TimeoutSecondsPath": "$.t"}, {}, None, ctx)
    # THEN the invoke path saw the state, machine, execution, attempt and timeout, and nothing after
    first, second = seen
    assert first is not None and second is not None
    assert (first.state, first.state_machine, first.execution, first.attempt) == (
        "ChargePayment", "OrderSaga", "order-3", 2,
    )  # fmt: skip
    assert first.timeout_seconds == 5.0
    assert second.timeout_seconds is None
    assert TASK_CALL.get() is None


class FakeProcess:
    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True

    def wait(self) -> int:
        return -9


class FakeWorker:
    def __init__(self) -> None:
        self.process = FakeProcess()
        self._proc: FakeProcess | None = self.process


def test_a_worker_that_served_a_crash_rule_dies_once_it_answered() -> None:
    worker, other = FakeWorker(), FakeWorker()
    invoke = with_worker_faults(lambda w, *a, **k: {"body": "answer"})
    assert invoke(other, "event") == {"body": "answer"}
    token = CRASHING.set(True)
    try:
        assert invoke(worker, "event") == {"body": "answer"}
    finally:
        CRASHING.reset(token)
    assert worker.process.killed and worker._proc is None
    assert not other.process.killed and other._proc is other.process


def test_a_cold_start_rule_replaces_the_worker_before_it_runs_and_starts_the_new_one_from_scratch() -> None:
    # GIVEN a warm worker, and an invoke that reports whether its spawn may fork
    worker = FakeWorker()
    seen: list[tuple[bool, bool]] = []

    def invoke(w: FakeWorker, *args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append((w._proc is None, FROM_SCRATCH.get()))
        return {"body": "answer"}

    applied = with_worker_faults(invoke)
    # WHEN an invocation runs under a cold-start rule
    token = COLD_STARTING.set(True)
    try:
        assert applied(worker, "event") == {"body": "answer"}
    finally:
        COLD_STARTING.reset(token)
    # THEN its warm worker was stopped first and the new one is started, not forked
    assert worker.process.killed and seen == [(True, True)]
    # AND the next invocation forks again
    applied(FakeWorker(), "event")
    assert seen[-1] == (False, False)


# ------------------------------------------------------------------------ the control route


def post(book: FaultBook, body: Any, path: str = ROUTE) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return handle_request(book, "POST", path, "", raw)


def test_the_route_adds_lists_and_clears_rules() -> None:
    book = FaultBook()
    # GIVEN an empty book, listed (with no late invocation held by a timeout rule)
    assert handle_request(book, "GET", ROUTE, "", b"") == (200, {"rules": [], "lateInvocations": 0})
    # WHEN a valid rule is posted
    status, answer = post(book, {"rules": [{"target": {"state": "S"}, "kind": "error"}]})
    # THEN it is added and listed with its id
    assert status == 200 and answer["rules"][0]["id"] == "f1"
    assert handle_request(book, "GET", ROUTE + "/", "", b"")[1]["rules"] == answer["rules"]
    post(
        book,
        {"rules": [{"target": {"state": "T"}, "kind": "error"}, {"target": {"state": "U"}, "kind": "error"}]},
    )
    # WHEN one is deleted by id, several by /clear, then all
    assert handle_request(book, "DELETE", ROUTE + "/f1", "", b"") == (200, {"cleared": 1})
    assert post(book, {"ids": ["f2", "f9"]}, ROUTE + "/clear") == (200, {"cleared": 1})
    assert handle_request(book, "DELETE", ROUTE, "", b"") == (200, {"cleared": 1})
    assert book.rules == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        ({"rules": [{"target": {"state": "S"}, "kind": "delay"}]}, "rule 1: delay needs delayMs"),
        ({"rules": []}, "at least one rule"),
        ([{"target": {"state": "S"}, "kind": "error"}], "at least one rule"),
    ],
)
def test_the_route_refuses_a_bad_post_with_a_message(body: Any, message: str) -> None:
    book = FaultBook()
    status, answer = post(book, body)
    assert status == 400
    assert message in answer["message"]
    assert book.rules == []


@pytest.mark.parametrize("body", [b"{", {"ids": "f1"}, {"ids": [1]}, [], {}])
def test_the_route_refuses_a_bad_clear(body: Any) -> None:
    book = book_with({"target": {"state": "S"}, "kind": "error"})
    status, answer = post(book, body, ROUTE + "/clear")
    assert status == 400 and "ids" in answer["message"]
    assert len(book.rules) == 1


def test_deleting_an_unknown_rule_is_not_found() -> None:
    book = book_with({"target": {"state": "S"}, "kind": "error"})
    assert handle_request(book, "DELETE", ROUTE + "/f9", "", b"") == (404, {"message": "no fault rule f9"})
    assert len(book.rules) == 1


def test_an_unknown_route_is_not_found() -> None:
    status, answer = handle_request(FaultBook(), "PUT", ROUTE, "", b"")
    assert status == 404 and "no route PUT" in answer["message"]


def test_the_route_reads_injections_by_execution() -> None:
    book = book_with({"target": {"state": "ChargePayment"}, "kind": "error"})
    for execution in ("order-1", "order-2"):
        with in_task(task_call(execution=execution)):
            fires(book)
    status, answer = handle_request(book, "GET", ROUTE + "/injections", "execution=order-2", b"")
    assert status == 200
    assert [entry["execution"] for entry in answer["injections"]] == ["order-2"]
    all_of_them = handle_request(book, "GET", ROUTE + "/injections", "", b"")[1]["injections"]
    assert [entry["execution"] for entry in all_of_them] == ["order-1", "order-2"]


def test_the_route_reads_injections_of_an_execution_named_as_the_client_quotes_it() -> None:
    book = book_with({"target": {"state": "ChargePayment"}, "kind": "error"})
    with in_task(task_call(execution="commande-é")):
        fires(book)
    query = "execution=" + urllib.parse.quote("commande-é")  # what the sandbox's client sends
    answer = handle_request(book, "GET", ROUTE + "/injections", query, b"")[1]
    assert [entry["execution"] for entry in answer["injections"]] == ["commande-é"]


# ------------------------------------------------------------------------ the ASGI wrapper


class FakeApp:
    """The engine's own ASGI app: notes which paths reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope.get("path", scope["type"]))


def drive(app: Any, scope: dict[str, Any], chunks: list[bytes] | None = None) -> list[dict[str, Any]]:
    """One request through an ASGI app; the messages it sent."""
    pending = list(chunks or [b""])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(method: str, path: str, query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query}


def test_the_asgi_wrapper_answers_the_fault_route_itself() -> None:
    # GIVEN the engine's app wrapped with the fault route
    engine_app, book = FakeApp(), FaultBook()
    app = with_fault_route(engine_app, book)
    # WHEN a rule is posted in two body chunks
    body = json.dumps({"rules": [{"target": {"function": "pay-fn"}, "kind": "error"}]}).encode()
    start, reply = drive(app, http_scope("POST", ROUTE), [body[:10], body[10:]])
    # THEN the wrapper answered it as JSON, and the engine's app never saw it
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(reply["body"])).encode()
    assert json.loads(reply["body"])["rules"][0]["id"] == "f1"
    assert len(book.rules) == 1
    assert engine_app.paths == []
    # AND a bad request gets its status through the wrapper
    start, reply = drive(app, http_scope("DELETE", ROUTE + "/f9"))
    assert start["status"] == 404 and json.loads(reply["body"]) == {"message": "no fault rule f9"}


def test_the_asgi_wrapper_passes_the_query_string() -> None:
    book = book_with({"target": {"state": "ChargePayment"}, "kind": "error"})
    with in_task(task_call(execution="order-1")):
        fires(book)
    app = with_fault_route(FakeApp(), book)
    _, reply = drive(app, http_scope("GET", ROUTE + "/injections", b"execution=order-2"))
    assert json.loads(reply["body"]) == {"injections": []}


@pytest.mark.parametrize(
    "scope",
    [
        http_scope("GET", "/"),
        http_scope("POST", "/2015-03-31/functions/pay-fn/invocations"),
        http_scope("GET", ROUTE + "x"),
        {"type": "lifespan"},
        {"type": "websocket", "path": ROUTE},
    ],
)
def test_the_asgi_wrapper_passes_every_other_request_to_the_engine(scope: dict[str, Any]) -> None:
    engine_app = FakeApp()
    sent = drive(with_fault_route(engine_app, FaultBook()), scope)
    assert engine_app.paths == [scope.get("path", scope["type"])]
    assert sent == []
