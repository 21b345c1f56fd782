"""Python handler exceptions under their own class name, and throttles under AWS's name for them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# The last line of a Python traceback: "package.module.ErrorName: message" (or "ErrorName").
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<name>[A-Za-z_]\w*)(?::.*)?$")


def exception_name(log: str) -> str | None:
    """The class name of the exception of the last traceback in ``log``, if there is one.

    After "Traceback (most recent call last):" come indented frame lines, then the first line
    at column 0 names the exception (its message may continue on further lines).
    """
    lines = log.splitlines()
    starts = [
        index for index, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")
    ]
    if not starts:
        return None
    for line in lines[starts[-1] + 1 :]:
        if line and not line[0].isspace():
            match = _EXCEPTION_LINE.match(line.strip())
            return match.group("name") if match else None
    return None


# What Step Functions calls a throttled Lambda invocation on AWS (a Retry names it).
THROTTLE_ERROR = "Lambda.TooManyRequestsException"


def with_error_types(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Report a Python handler's exception class as ``errorType``, as AWS Lambda does.

    The engine reports every Python handler exception as ``Runtime.HandlerError``, so a Step
    Functions Retry or Catch on an error name (``TransientStepError``) never matches. A throttle
    (no worker free within the queueing bound) carries no ``errorType`` at all, so Step Functions
    saw ``Lambda.Unknown`` where AWS reports ``Lambda.TooManyRequestsException``, and the saga's
    Retry on throttles never applied: under a long backlog, orders failed instead of retrying.
    """

    def run_with_error_type(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = run(*args, **kwargs)
        body = result.get("body")
        if result.get("throttle") and isinstance(body, dict):
            body.setdefault("errorType", THROTTLE_ERROR)
        if result.get("error") and isinstance(body, dict) and body.get("errorType") == "Runtime.HandlerError":
            name = exception_name(str(result.get("log") or ""))
            if name:
                body["errorType"] = name
        return result

    return run_with_error_type
