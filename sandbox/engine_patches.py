"""Small, pinned patches of the embedded engine, applied by the sandbox's own engine launcher.

Run as ``python -m sandbox.engine_patches``: applies the patches, then starts MiniStack. Each
patch closes a measured gap between the engine and AWS that the saga depends on, and is only
applied to the engine version it was written against.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

PINNED_ENGINE_VERSION = "1.5.33"
logger = logging.getLogger("sandbox.engine_patches")

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


def with_error_types(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Report a Python handler's exception class as ``errorType``, as AWS Lambda does.

    The engine reports every Python handler exception as ``Runtime.HandlerError``, so a Step
    Functions Retry or Catch on an error name (``TransientStepError``) never matches.
    """

    def run_with_error_type(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = run(*args, **kwargs)
        body = result.get("body")
        if result.get("error") and isinstance(body, dict) and body.get("errorType") == "Runtime.HandlerError":
            name = exception_name(str(result.get("log") or ""))
            if name:
                body["errorType"] = name
        return result

    return run_with_error_type


def _batch_item_failures(result: dict[str, Any]) -> list[Any]:
    body = result.get("body")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return []
    return list(body.get("batchItemFailures") or []) if isinstance(body, dict) else []


def _error_type(result: dict[str, Any]) -> str:
    body = result.get("body")
    return str(body.get("errorType") or "Unhandled") if isinstance(body, dict) else "Unhandled"


def with_stream_batch_semantics(
    execute: Callable[..., dict[str, Any]],
    find_mapping: Callable[[str, str], dict[str, Any] | None],
    send_to_on_failure: Callable[..., None],
) -> Callable[..., dict[str, Any]]:
    """Honor a DynamoDB stream mapping's ReportBatchItemFailures and MaximumRetryAttempts.

    The engine advances past a batch whose function reports failed items (AWS retries them) and
    retries a failing batch forever (AWS stops after MaximumRetryAttempts and sends the batch to
    the OnFailure destination). Wrapping the engine's invoke for stream batches: reported items
    make the batch fail, so it is delivered again; once a batch has failed more than
    MaximumRetryAttempts times it goes to the OnFailure destination and the shard moves on.
    (BisectBatchOnFunctionError is not applied: the whole batch is retried.)
    """
    failed_attempts: dict[tuple[str, str], int] = {}

    def run(func: dict[str, Any], event: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = execute(func, event, *args, **kwargs)
        records = event.get("Records") if isinstance(event, dict) else None
        if not records or records[0].get("eventSource") != "aws:dynamodb":
            return result
        config = func.get("config") or func
        mapping = find_mapping(str(config.get("FunctionName", "")), str(records[0].get("eventSourceARN", "")))
        if mapping is None:
            return result
        reports_items = "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or [])
        item_failures = _batch_item_failures(result) if reports_items and not result.get("error") else []
        key = (str(mapping.get("UUID")), str(records[0].get("dynamodb", {}).get("SequenceNumber")))
        if not result.get("error") and not item_failures:
            failed_attempts.pop(key, None)
            return result
        attempts = failed_attempts[key] = failed_attempts.get(key, 0) + 1
        max_retries = mapping.get("MaximumRetryAttempts")
        if max_retries is not None and int(max_retries) >= 0 and attempts > int(max_retries):
            failed_attempts.pop(key, None)
            send_to_on_failure(mapping, func, records, mapping.get("EventSourceArn", ""),
                               {**result, "function_error": _error_type(result)}, "RetryAttemptsExhausted")  # fmt: skip
            return {"body": {"batchItemFailures": []}, "log": result.get("log", "")}
        if item_failures:
            return {
                "error": True,
                "body": {"errorType": "BatchItemFailures",
                         "errorMessage": f"{len(item_failures)} record(s) reported as failed"},
                "log": result.get("log", ""),
            }  # fmt: skip
        return result

    return run


def apply_patches() -> bool:
    """Patch the installed engine if it is the pinned version; return whether it was."""
    installed = version("ministack")
    if installed != PINNED_ENGINE_VERSION:
        logger.warning(
            "engine %s is not the pinned %s: sandbox patches not applied", installed, PINNED_ENGINE_VERSION
        )
        return False
    from ministack.services import lambda_svc

    lambda_svc._execute_function_warm = with_error_types(lambda_svc._execute_function_warm)

    def find_mapping(function_name: str, source_arn: str) -> dict[str, Any] | None:
        for _account, _region, mapping in lambda_svc._iter_all_esms():
            if mapping.get("FunctionName") == function_name and mapping.get("EventSourceArn") == source_arn:
                return dict(mapping)
        return None

    lambda_svc._execute_function = with_stream_batch_semantics(
        lambda_svc._execute_function, find_mapping, lambda_svc._send_ddb_stream_failure_record
    )
    return True


def _warm_imports() -> None:
    # The first CreateChangeSet applies the SAM transform; importing the translator while the
    # server starts takes that cost off the first deploy.
    import samtranslator.translator.transform  # noqa: F401


def main() -> None:
    apply_patches()
    threading.Thread(target=_warm_imports, name="warm-imports", daemon=True).start()
    from ministack.app import main as engine_main

    engine_main()


if __name__ == "__main__":
    main()
