"""The engine patch that reports a Python handler's exception class as the Lambda errorType."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.engine_patches import exception_name, with_error_types

TRACEBACK = """\
START RequestId: 1 Version: $LATEST
Traceback (most recent call last):
  File "/var/task/payment/handler.py", line 23, in lambda_handler
    return handle_step(event, context, service="payment", actions=ACTIONS, logger=logger)
  File "/var/task/shared/faults.py", line 31, in check_faults
    raise TransientStepError(
shared.errors.TransientStepError: injected transient error in payment (attempt 1 of 2 failing)
"""


@pytest.mark.parametrize(
    ("last_line", "name"),
    [
        ("shared.errors.TransientStepError: injected transient error in payment", "TransientStepError"),
        ("shared.errors.InjectedFailure: injected failure in payment", "InjectedFailure"),
        ("KeyError: 'orderId'", "KeyError"),
        (
            "botocore.errorfactory.ConditionalCheckFailedException: An error occurred: x: y",
            "ConditionalCheckFailedException",
        ),
        ("StopIteration", "StopIteration"),
    ],
)
def test_exception_name_is_the_class_of_the_last_traceback_line(last_line: str, name: str) -> None:
    log = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\n' + last_line + "\n\n"
    assert exception_name(log) == name


def test_exception_name_of_a_real_looking_log() -> None:
    assert exception_name(TRACEBACK) == "TransientStepError"


@pytest.mark.parametrize(
    "log",
    [
        "",
        "shared.errors.TransientStepError: boom",  # no traceback above it
        "Traceback (most recent call last):",  # nothing after it
        "just some output\nmore output",
        'Traceback (most recent call last):\n  File "x.py", line 1\nnot an exception line: ok?',
    ],
)
def test_exception_name_is_none_without_a_traceback_ending(log: str) -> None:
    assert exception_name(log) is None


def fake_run(result: dict[str, Any]) -> Any:
    calls: list[tuple[tuple, dict]] = []

    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append((args, kwargs))
        return result

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_handler_error_is_renamed_to_the_exception_class() -> None:
    # GIVEN the engine reported every Python exception as Runtime.HandlerError
    result = {
        "error": True,
        "log": TRACEBACK,
        "body": {"errorType": "Runtime.HandlerError", "errorMessage": "injected transient error"},
    }
    run = fake_run(result)
    # WHEN run through the patch (arguments passed through untouched)
    patched = with_error_types(run)
    out = patched("fn", {"a": 1}, timeout=3)
    # THEN Step Functions sees the class name its Retry lists
    assert out["body"]["errorType"] == "TransientStepError"
    assert out["body"]["errorMessage"] == "injected transient error"
    assert run.calls == [(("fn", {"a": 1}), {"timeout": 3})]


@pytest.mark.parametrize(
    "result",
    [
        {"error": False, "log": TRACEBACK, "body": {"errorType": "Runtime.HandlerError"}},
        {"error": True, "log": TRACEBACK, "body": {"errorType": "Runtime.ImportModuleError"}},
        {"error": True, "log": "no traceback here", "body": {"errorType": "Runtime.HandlerError"}},
        {"error": True, "log": None, "body": {"errorType": "Runtime.HandlerError"}},
        {"error": True, "log": TRACEBACK, "body": "a string body"},
        {"error": True, "log": TRACEBACK},
    ],
)
def test_other_results_are_left_alone(result: dict[str, Any]) -> None:
    before = repr(result)
    assert with_error_types(fake_run(result))() is result
    assert repr(result) == before


def test_exception_name_reads_the_exception_line_not_a_message_continuation() -> None:
    # GIVEN a traceback whose exception message spans two lines, the last a single word
    log = 'Traceback (most recent call last):\n  File "h.py", line 1, in f\n    raise ValueError("bad\\ninput")\nValueError: bad\ninput'
    # THEN the exception class is reported, not the message's last word
    from sandbox.engine_patches import exception_name

    assert exception_name(log) == "ValueError"


# ------------------------------------------------------------- stream batch semantics


def _stream_event(sequence: str = "100") -> dict:
    return {"Records": [{"eventSource": "aws:dynamodb", "eventSourceARN": "arn:stream",
                         "dynamodb": {"SequenceNumber": sequence}}]}  # fmt: skip


def _patched(results: list[dict], mapping: dict | None, sent: list) -> object:
    from sandbox.engine_patches import with_stream_batch_semantics

    calls = iter(results)
    return with_stream_batch_semantics(
        lambda func, event: next(calls),
        lambda name, arn: mapping,
        lambda *args: sent.append(args),
    )


MAPPING = {"UUID": "esm-1", "FunctionName": "publisher", "EventSourceArn": "arn:stream",
           "FunctionResponseTypes": ["ReportBatchItemFailures"], "MaximumRetryAttempts": 2}  # fmt: skip
FUNC = {"config": {"FunctionName": "publisher"}}


def test_reported_item_failures_make_the_batch_fail_so_it_is_delivered_again() -> None:
    sent: list = []
    run = _patched([{"body": {"batchItemFailures": [{"itemIdentifier": "100"}]}}], MAPPING, sent)
    result = run(FUNC, _stream_event())  # type: ignore[operator]
    assert result["error"] is True and result["body"]["errorType"] == "BatchItemFailures"
    assert sent == []


def test_a_batch_failing_past_maximum_retry_attempts_goes_to_on_failure_and_is_acknowledged() -> None:
    # GIVEN a mapping allowing 2 retries and a function that always fails
    sent: list = []
    failing = {"error": True, "body": {"errorType": "ValueError"}}
    run = _patched([failing, failing, failing], MAPPING, sent)
    # WHEN the batch is delivered three times (the first try and two retries)
    outcomes = [run(FUNC, _stream_event()) for _ in range(3)]  # type: ignore[operator]
    # THEN the first two fail (so the engine retries) and the third is sent to the destination
    assert [bool(o.get("error")) for o in outcomes] == [True, True, False]
    assert len(sent) == 1 and sent[0][-1] == "RetryAttemptsExhausted"


def test_success_resets_the_attempt_count_and_other_events_pass_through() -> None:
    sent: list = []
    failing = {"error": True, "body": {}}
    run = _patched([failing, {"body": {"batchItemFailures": []}}, failing, failing], MAPPING, sent)
    run(FUNC, _stream_event())  # type: ignore[operator]
    run(FUNC, _stream_event())  # type: ignore[operator]
    assert [bool(run(FUNC, _stream_event()).get("error")) for _ in range(2)] == [True, True]  # type: ignore[operator]
    assert sent == []
    plain = _patched([{"body": "ok"}], MAPPING, sent)
    assert plain(FUNC, {"not": "a stream event"}) == {"body": "ok"}  # type: ignore[operator]
    unmapped = _patched([failing], None, sent)
    assert unmapped(FUNC, _stream_event()) is failing  # type: ignore[operator]
