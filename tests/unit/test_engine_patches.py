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
