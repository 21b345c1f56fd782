"""Lambda log events -> parsed lines, invocations and order filters; --since; the function map."""

from __future__ import annotations

import json
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from cli.trace_commands import follow_lines, remembered_ctrl_c
from sandbox.logs import (
    PLATFORM,
    LogFollower,
    LogLine,
    LogsError,
    StackFunction,
    choose_functions,
    drop_quiet_requests,
    fetch_events,
    function_names,
    group_invocations,
    parse_events,
    parse_since,
    read_lines,
    select_order,
    sort_lines,
    stack_functions,
)

ORDER = "7969a884-02dd-4548-8493-516227f2c5b4"
OTHER = "0e763944-35cf-4c9a-a010-1cf45536a23b"
T0 = 1_795_393_242_000  # ms


def powertools(message: str, at_ms: int, request_id: str, level: str = "INFO", **extra: Any) -> str:
    """A Powertools JSON line as the handlers write it."""
    stamp = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    text = stamp.strftime("%Y-%m-%d %H:%M:%S,") + f"{stamp.microsecond // 1000:03d}+0000"
    return json.dumps(
        {"level": level, "location": "handle_step:97", "message": message, "timestamp": text,
         "service": "payment", "cold_start": False, "function_request_id": request_id, **extra}
    )  # fmt: skip


def invocation(
    request_id: str, body: list[str], *, ended_ms: int, duration_ms: int, stream: str = "s1"
) -> list[dict[str, Any]]:
    """One request's events as the engine writes them: every line stamped when it ended."""
    lines = [
        f"START RequestId: {request_id} Version: $LATEST",
        *body,
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms} ms\tBilled Duration: {duration_ms} ms",
    ]
    return [{"timestamp": ended_ms, "message": line, "logStreamName": stream} for line in lines]


def charged(request_id: str, order_id: str, at_ms: int) -> str:
    return powertools("ChargePayment done", at_ms, request_id, correlation_id=order_id, step="ChargePayment")


FAILED_CHARGE = invocation(
    "req-fail",
    [
        powertools("ChargePayment failed", T0 + 30, "req-fail", "ERROR", correlation_id=ORDER,
                   error_type="PaymentDeclinedError"),
        "Traceback (most recent call last):",
        '  File "handler.py", line 23, in lambda_handler',
        "shared.errors.PaymentDeclinedError: card declined",
    ],
    ended_ms=T0 + 40,
    duration_ms=38,
)  # fmt: skip


# ---------------------------------------------------------------- --since


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), (" 10M ", 600)]
)
def test_since_accepts_seconds_minutes_hours_and_days(text: str, seconds: int) -> None:
    assert parse_since(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5", "m", "5x", "-5m", "0s", "1.5h", "5 minutes", ""])
def test_since_refuses_anything_else_with_an_example(text: str) -> None:
    with pytest.raises(LogsError, match=r"e\.g\. 30s, 5m, 1h or 2d"):
        parse_since(text)


# ---------------------------------------------------------------- parsing


def test_parse_reads_powertools_fields_levels_and_request_ids() -> None:
    # GIVEN a failed request: a structured error line, then the runtime's traceback
    lines = parse_events("payment", FAILED_CHARGE)
    # THEN each line knows its request, and its level
    assert {line.request_id for line in lines} == {"req-fail"}
    levels = [line.level for line in lines]
    assert levels == [PLATFORM, "ERROR", "ERROR", "ERROR", "ERROR", PLATFORM, PLATFORM]
    structured = lines[1]
    assert structured.message == "ChargePayment failed"
    assert structured.extras == {"correlation_id": ORDER, "error_type": "PaymentDeclinedError"}
    # AND a structured line is dated by Powertools (ms), not by the engine's end-of-request stamp
    assert structured.at == datetime.fromtimestamp((T0 + 30) / 1000, tz=UTC)


def test_start_lines_are_dated_at_the_start_of_their_request() -> None:
    # GIVEN an engine that stamps every line at the end (T0 + 40) of a 38 ms request
    lines = parse_events("payment", FAILED_CHARGE)
    # THEN START is dated 38 ms earlier, END and REPORT stay at the end
    assert lines[0].at == datetime.fromtimestamp((T0 + 2) / 1000, tz=UTC)
    assert lines[-1].at == datetime.fromtimestamp((T0 + 40) / 1000, tz=UTC)


def test_lines_without_json_are_plain_text_at_info() -> None:
    lines = parse_events("payment", invocation("r1", ["hello from print()"], ended_ms=T0, duration_ms=5))
    assert (lines[1].level, lines[1].message, lines[1].fields) == ("INFO", "hello from print()", {})


def test_invocations_have_their_start_and_duration_from_report() -> None:
    events = FAILED_CHARGE + invocation("req-ok", [charged("req-ok", ORDER, T0 + 90)], ended_ms=T0 + 95,
                                        duration_ms=20, stream="s2")  # fmt: skip
    invocations = group_invocations(parse_events("payment", events))
    assert [(item.request_id, item.duration_ms, item.has_failed) for item in invocations] == [
        ("req-fail", 38, True),
        ("req-ok", 20, False),
    ]
    assert invocations[1].started_at == datetime.fromtimestamp((T0 + 75) / 1000, tz=UTC)
    assert [line.message for line in invocations[1].messages("ChargePayment done")] == ["ChargePayment done"]


# ---------------------------------------------------------------- filtering


def test_an_order_selects_whole_requests_including_their_tracebacks() -> None:
    # GIVEN a failed request of the order and a request of another order
    other = invocation("req-other", [charged("req-other", OTHER, T0 + 60)], ended_ms=T0 + 61, duration_ms=9,
                       stream="s2")  # fmt: skip
    lines = parse_events("payment", FAILED_CHARGE + other)
    # WHEN filtering on the order
    selected = select_order(lines, ORDER)
    # THEN every line of its request is kept (traceback lines do not name the order) and nothing else
    assert len(selected) == len(FAILED_CHARGE)
    assert {line.request_id for line in selected} == {"req-fail"}
    assert any(line.message.startswith("shared.errors.PaymentDeclinedError") for line in selected)


def test_quiet_requests_are_dropped_on_request() -> None:
    # GIVEN a GET poll that logged nothing of its own, and a request that did
    quiet = invocation("req-get", [], ended_ms=T0 + 1, duration_ms=3, stream="s3")
    lines = parse_events("order-api", quiet + FAILED_CHARGE)
    # THEN only the request that said something is left
    assert {line.request_id for line in drop_quiet_requests(lines)} == {"req-fail"}


def test_sorting_keeps_each_request_together_from_its_start() -> None:
    # GIVEN two functions whose requests overlap: inventory starts first but ends last
    inventory = parse_events(
        "inventory", invocation("inv", [charged("inv", ORDER, T0 + 90)], ended_ms=T0 + 100, duration_ms=100)
    )
    payment = parse_events(
        "payment", invocation("pay", [charged("pay", ORDER, T0 + 40)], ended_ms=T0 + 50, duration_ms=20)
    )
    # WHEN sorted
    ordered = sort_lines(payment + inventory)
    # THEN the earlier request comes first, whole, in the order its lines were written
    assert [line.request_id for line in ordered] == ["inv"] * 4 + ["pay"] * 4
    assert ordered[0].raw.startswith("START") and ordered[3].raw.startswith("REPORT")


# ---------------------------------------------------------------- the engine's API


def test_function_names_map_service_names_to_the_stack_s_functions(client_factory: Any) -> None:
    cfn, lambda_client = client_factory("cloudformation"), client_factory("lambda")
    resources = [
        {"LogicalResourceId": "PaymentFunction", "PhysicalResourceId": "stack-PaymentFunction-ABC",
         "ResourceType": "AWS::Lambda::Function", "LastUpdatedTimestamp": datetime(2026, 1, 1),
         "ResourceStatus": "CREATE_COMPLETE"},
        {"LogicalResourceId": "OrdersTable", "PhysicalResourceId": "stack-OrdersTable-DEF",
         "ResourceType": "AWS::DynamoDB::Table", "LastUpdatedTimestamp": datetime(2026, 1, 1),
         "ResourceStatus": "CREATE_COMPLETE"},
        {"LogicalResourceId": "OrderApiFunction", "PhysicalResourceId": "stack-OrderApiFunction-GHI",
         "ResourceType": "AWS::Lambda::Function", "LastUpdatedTimestamp": datetime(2026, 1, 1),
         "ResourceStatus": "CREATE_COMPLETE"},
    ]  # fmt: skip
    functions = [
        {"FunctionName": "stack-PaymentFunction-ABC", "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "payment"}}},
        {"FunctionName": "stack-OrderApiFunction-GHI", "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "order-api"}}},
        {"FunctionName": "another-stack-fn", "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "payment"}}},
    ]  # fmt: skip
    with Stubber(cfn) as cfn_stub, Stubber(lambda_client) as lambda_stub:
        cfn_stub.add_response(
            "list_stack_resources", {"StackResourceSummaries": resources}, {"StackName": "stack"}
        )
        lambda_stub.add_response("list_functions", {"Functions": functions}, {})
        names = function_names(cfn, lambda_client, "stack")
    # THEN only this stack's functions, in the order an order meets them
    assert list(names.items()) == [
        ("order-api", "stack-OrderApiFunction-GHI"),
        ("payment", "stack-PaymentFunction-ABC"),
    ]


def test_functions_without_a_unique_service_name_are_labelled_by_logical_id(client_factory: Any) -> None:
    # GIVEN a project whose functions share one service name, and one with none
    cfn, lambda_client = client_factory("cloudformation"), client_factory("lambda")
    resources = [
        {"LogicalResourceId": logical, "PhysicalResourceId": f"shop-{logical}-X",
         "ResourceType": "AWS::Lambda::Function", "LastUpdatedTimestamp": datetime(2026, 1, 1),
         "ResourceStatus": "CREATE_COMPLETE"}
        for logical in ("ReserveFunction", "ChargeFunction", "PlainFunction")
    ]  # fmt: skip
    functions = [
        {"FunctionName": "shop-ReserveFunction-X", "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "shop"}}},
        {"FunctionName": "shop-ChargeFunction-X", "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "shop"}}},
        {"FunctionName": "shop-PlainFunction-X"},
    ]  # fmt: skip
    with Stubber(cfn) as cfn_stub, Stubber(lambda_client) as lambda_stub:
        cfn_stub.add_response(
            "list_stack_resources", {"StackResourceSummaries": resources}, {"StackName": "shop"}
        )
        lambda_stub.add_response("list_functions", {"Functions": functions}, {})
        found = stack_functions(cfn, lambda_client, "shop")
    # THEN every function is there, under its logical id
    assert [(f.label, f.name) for f in found] == [
        ("ChargeFunction", "shop-ChargeFunction-X"),
        ("PlainFunction", "shop-PlainFunction-X"),
        ("ReserveFunction", "shop-ReserveFunction-X"),
    ]


DEMO_FUNCTIONS = [
    StackFunction("OrderApiFunction", "stack-OrderApiFunction-GHI", "order-api"),
    StackFunction("PaymentFunction", "stack-PaymentFunction-ABC", "payment"),
    StackFunction("PlainFunction", "stack-PlainFunction-JKL"),
]


@pytest.mark.parametrize("wanted", ["payment", "PaymentFunction", "stack-PaymentFunction-ABC"])
def test_a_function_is_chosen_by_short_name_logical_id_or_name(wanted: str) -> None:
    assert choose_functions(DEMO_FUNCTIONS, wanted) == {"payment": "stack-PaymentFunction-ABC"}


def test_all_functions_are_chosen_by_default_and_an_unknown_one_lists_the_stack_s() -> None:
    assert choose_functions(DEMO_FUNCTIONS, None) == {
        "order-api": "stack-OrderApiFunction-GHI",
        "payment": "stack-PaymentFunction-ABC",
        "PlainFunction": "stack-PlainFunction-JKL",
    }
    with pytest.raises(LogsError, match="the stack has no function 'billing'") as raised:
        choose_functions(DEMO_FUNCTIONS, "billing")
    assert raised.value.hint == (
        "give a logical id, a function name or a short name: "
        "OrderApiFunction (order-api), PaymentFunction (payment), PlainFunction"
    )
    with pytest.raises(LogsError) as raised:
        choose_functions([], "payment")
    assert raised.value.hint == "the stack has no Lambda function"


def test_fetch_follows_next_tokens_and_a_missing_group_means_no_lines(client_factory: Any) -> None:
    logs = client_factory("logs")
    group = "/aws/lambda/fn"
    with Stubber(logs) as stub:
        stub.add_response(
            "filter_log_events",
            {"events": [{"timestamp": T0, "message": "a"}], "nextToken": "t1"},
            {"logGroupName": group, "startTime": T0},
        )
        stub.add_response(
            "filter_log_events",
            {"events": [{"timestamp": T0 + 1, "message": "b"}]},
            {"logGroupName": group, "startTime": T0, "nextToken": "t1"},
        )
        assert [event["message"] for event in fetch_events(logs, "fn", start_ms=T0)] == ["a", "b"]
        stub.add_client_error("filter_log_events", "ResourceNotFoundException", http_status_code=400)
        assert fetch_events(logs, "fn") == []
        stub.add_client_error("filter_log_events", "AccessDeniedException", http_status_code=400)
        with pytest.raises(ClientError):
            fetch_events(logs, "fn")


class FakeLogs:
    """filter_log_events over a list of events that grows as the test appends to it."""

    def __init__(self) -> None:
        self.groups: dict[str, list[dict[str, Any]]] = {}

    def filter_log_events(self, logGroupName: str, startTime: int = 0, **_: Any) -> dict[str, Any]:
        events = [event for event in self.groups.get(logGroupName, []) if event["timestamp"] >= startTime]
        return {"events": events}


def test_read_lines_reads_every_function_and_filters_on_the_order() -> None:
    logs = FakeLogs()
    logs.groups["/aws/lambda/pay-fn"] = FAILED_CHARGE + invocation(
        "req-other", [charged("req-other", OTHER, T0 + 60)], ended_ms=T0 + 61, duration_ms=9, stream="s2"
    )
    lines = read_lines(logs, {"payment": "pay-fn", "shipping": "ship-fn"}, order_id=ORDER)
    assert {line.request_id for line in lines} == {"req-fail"}


def test_follow_returns_each_line_once_as_it_arrives() -> None:
    # GIVEN a follower started at T0 on an empty log group
    logs = FakeLogs()
    group = logs.groups.setdefault("/aws/lambda/pay-fn", [])
    follower = LogFollower(logs, {"payment": "pay-fn"}, start_ms=T0, order_id=ORDER)
    assert follower.poll() == []
    # WHEN a request of the order and one of another order are written
    group.extend(FAILED_CHARGE)
    group.extend(
        invocation("req-other", [charged("req-other", OTHER, T0 + 39)], ended_ms=T0 + 40, duration_ms=9,
                   stream="s2")
    )  # fmt: skip
    first = follower.poll()
    # THEN the order's lines come once, the other order's never
    assert len(first) == len(FAILED_CHARGE)
    assert follower.poll() == []
    # AND a later request with the same end stamp is still seen (not mistaken for a repeat)
    group.extend(invocation("req-2", [charged("req-2", ORDER, T0 + 39)], ended_ms=T0 + 40, duration_ms=9,
                            stream="s3"))  # fmt: skip
    assert {line.request_id for line in follower.poll()} == {"req-2"}


class FollowedLogs:
    """A follower's poll: one line per call, and what happens during each call."""

    def __init__(self, during_poll: Callable[[int], None] = lambda call: None, max_calls: int = 5):
        self.calls = 0
        self.during_poll = during_poll
        self.max_calls = max_calls

    def poll(self) -> list[LogLine]:
        self.calls += 1
        if self.calls > self.max_calls:
            raise AssertionError(f"still polling after {self.max_calls} polls: Ctrl-C was lost")
        self.during_poll(self.calls)
        return [LogLine("payment", datetime.now(UTC), "INFO", f"line {self.calls}", "s1")]


@pytest.fixture
def python_s_own_sigint() -> Iterator[None]:
    """Python's own SIGINT handler for a test that presses Ctrl-C, whatever the run inherited: a
    `nohup make test` (or a CI runner that starts jobs that way) starts with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def press_ctrl_c_inside_a_finalizer() -> None:
    """SIGINT landing while a finalizer runs, as when a garbage-collected urllib3 pool closes its sockets."""
    pool = type("Pool", (), {})()
    weakref.finalize(pool, signal.raise_signal, signal.SIGINT)
    del pool  # the finalizer runs here; the KeyboardInterrupt it raises is printed and dropped


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.usefixtures("python_s_own_sigint")
def test_ctrl_c_lost_in_a_finalizer_still_ends_the_follow_loop() -> None:
    # GIVEN the follow loop, with Ctrl-C handled by the CLI's handler
    emitted: list[LogLine] = []
    logs = FollowedLogs(during_poll=lambda call: press_ctrl_c_inside_a_finalizer() if call == 2 else None)
    with remembered_ctrl_c() as ctrl_c:
        assert signal.getsignal(signal.SIGINT) is ctrl_c
        # WHEN Ctrl-C lands inside a finalizer during the second poll (Python drops that KeyboardInterrupt)
        follow_lines(logs.poll, emitted.append, ctrl_c, interval=0)
    # THEN the loop ends after that poll, its lines printed, instead of polling on
    assert ctrl_c.is_pressed
    assert (logs.calls, [line.message for line in emitted]) == (2, ["line 1", "line 2"])
    # AND the previous handler is back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("python_s_own_sigint")
def test_ctrl_c_during_the_pause_ends_the_follow_loop_at_once() -> None:
    # GIVEN the follow loop pausing a minute between polls
    press = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    logs = FollowedLogs(during_poll=lambda call: press.start())
    started = time.monotonic()
    with remembered_ctrl_c() as ctrl_c:
        # WHEN Ctrl-C arrives 0.2 s after the first poll began, while it pauses
        try:
            follow_lines(logs.poll, lambda line: None, ctrl_c, interval=60)
        finally:
            press.cancel()
    # THEN it returns without finishing the pause or polling again
    assert (ctrl_c.is_pressed, logs.calls) == (True, 1)
    assert time.monotonic() - started < 30


@pytest.mark.usefixtures("python_s_own_sigint")
def test_ctrl_c_pressed_before_the_loop_starts_polls_nothing() -> None:
    logs = FollowedLogs()
    with remembered_ctrl_c() as ctrl_c:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        follow_lines(logs.poll, lambda line: None, ctrl_c, interval=0)
    assert logs.calls == 0


def test_an_ignored_sigint_stays_ignored() -> None:
    # GIVEN a process started with SIGINT ignored (nohup, a background job of a script)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # WHEN the follow loop's handler would be installed THEN SIGINT stays ignored
        with remembered_ctrl_c():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
