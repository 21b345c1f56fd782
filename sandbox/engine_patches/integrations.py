"""Step Functions service integrations: sns:publish keeps MessageAttributes, Lambda Tasks carry request ids."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

SNS_PUBLISH = "arn:aws:states:::sns:publish"


def query_message_attributes(attributes: Mapping[str, Any]) -> dict[str, str]:
    """A Publish's ``MessageAttributes`` (the API's JSON shape) as the query parameters of SNS."""
    params: dict[str, str] = {}
    for index, (name, value) in enumerate(attributes.items(), start=1):
        prefix = f"MessageAttributes.entry.{index}"
        params[f"{prefix}.Name"] = str(name)
        if not isinstance(value, Mapping):
            continue
        params[f"{prefix}.Value.DataType"] = str(value.get("DataType", "String"))
        for key in ("StringValue", "BinaryValue"):
            if value.get(key) is not None:
                params[f"{prefix}.Value.{key}"] = str(value[key])
    return params


def with_message_attributes(publish: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """The engine's ``sns:publish`` integration, passing the Task's MessageAttributes on to SNS.

    The Task's parameters arrive in the API's JSON shape, but the engine's SNS reads its query
    form (``MessageAttributes.entry.N.Name``), so the attributes were dropped: a subscription
    with a filter policy on them received nothing.
    """

    def publish_with_attributes(resource: str, input_data: Any) -> Any:
        attributes = input_data.get("MessageAttributes") if isinstance(input_data, Mapping) else None
        if isinstance(attributes, Mapping):
            params = {key: value for key, value in input_data.items() if key != "MessageAttributes"}
            params.update(query_message_attributes(attributes))
            input_data = params
        return publish(resource, input_data)

    return publish_with_attributes


# ------------------------------------------- lambda:invoke Tasks carry the Lambda request id

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


@dataclass(frozen=True)
class LambdaInvocation:
    """One invocation a Task made: the request id its logs and context carry, and what ran."""

    request_id: str
    version: str = "$LATEST"
    runtime: str = ""


# Set by a Lambda Task for the invocations it makes; the engine's dispatch appends to it. A list
# (not a value) so the engine's copied contexts (its account and region scope) still reach it.
_TASK_INVOCATIONS: contextvars.ContextVar[list[LambdaInvocation] | None] = contextvars.ContextVar(
    "sandbox_task_invocations", default=None
)


def recording_invocations(dispatch: Callable[..., Any]) -> Callable[..., Any]:
    """The engine's per-invocation dispatch, noting each request id for the Task that asked for it.

    The engine draws one request id per invocation (its START/END/REPORT lines and the context's
    ``aws_request_id``) and hands it to the dispatch, but returns it to no caller.
    """

    def dispatch_recording(
        func: Any, config: Any, event: Any, request_id: str, *args: Any, **kwargs: Any
    ) -> Any:
        invocations = _TASK_INVOCATIONS.get()
        if invocations is not None:
            settings = config if isinstance(config, Mapping) else {}
            invocations.append(
                LambdaInvocation(
                    str(request_id),
                    str(settings.get("Version") or "$LATEST"),
                    str(settings.get("Runtime") or ""),
                )
            )
        return dispatch(func, config, event, request_id, *args, **kwargs)

    return dispatch_recording


def lambda_invoke_output(
    payload: Any, invocation: LambdaInvocation, *, date: str | None = None
) -> dict[str, Any]:
    """A ``lambda:invoke`` Task's result as AWS returns it: the Invoke response and its SDK metadata."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Connection": "keep-alive",
        "Content-Length": str(len(body)),
        "Content-Type": "application/json",
        "Date": date or formatdate(usegmt=True),
        "X-Amz-Executed-Version": invocation.version,
        "x-amzn-Remapped-Content-Length": "0",
        "x-amzn-RequestId": invocation.request_id,
    }
    return {
        "ExecutedVersion": invocation.version,
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {name: [value] for name, value in headers.items()},
            "HttpHeaders": headers,
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": {"RequestId": invocation.request_id},
        "StatusCode": 200,
    }


def cause_with_request_id(cause: Any, invocation: LambdaInvocation) -> Any:
    """A failed Python invocation's cause with the ``requestId`` AWS's Python runtime puts in it.

    The runtime's error payload is ``{errorMessage, errorType, requestId, stackTrace}``; the id is
    empty for its init failures (``Runtime.*``: the handler never ran). Node's payload carries
    none, and a cause that is not a runtime's error payload (a throttle, a timeout) is kept.
    """
    if not invocation.runtime.startswith("python") or not isinstance(cause, str):
        return cause
    try:
        error = json.loads(cause)
    except ValueError:
        return cause
    if (
        not isinstance(error, dict)
        or "requestId" in error
        or not {"errorType", "errorMessage"} <= error.keys()
    ):
        return cause
    error_type = str(error["errorType"])
    if error_type.startswith(("Lambda.", "Sandbox.")):
        return cause
    ordered = {
        "errorMessage": error["errorMessage"],
        "errorType": error_type,
        "requestId": "" if error_type.startswith("Runtime.") else invocation.request_id,
        "stackTrace": error.get("stackTrace") or [],
    }
    ordered.update((key, value) for key, value in error.items() if key not in ordered)
    return json.dumps(ordered)


def with_request_ids(
    invoke_resource: Callable[[str, Any], Any], execution_error: type[Exception]
) -> Callable[[str, Any], Any]:
    """The engine's Task dispatch, answering a Lambda Task with the request id of its invocation.

    The engine's ``lambda:invoke`` result was ``{StatusCode, Payload}`` alone, so nothing tied a
    Task attempt to its function's log lines but the clock. It is now AWS's whole response
    (``SdkResponseMetadata.RequestId`` and the ``x-amzn-RequestId`` header), and a Python
    function's failure names the request in its cause as AWS's runtime does.
    """

    def invoke_with_request_id(resource: str, input_data: Any) -> Any:
        resource_text = str(resource)
        if "states:::lambda:invoke" not in resource_text and ":function:" not in resource_text:
            return invoke_resource(resource, input_data)
        invocations: list[LambdaInvocation] = []
        token = _TASK_INVOCATIONS.set(invocations)
        try:
            result = invoke_resource(resource, input_data)
        except execution_error as error:
            if invocations and hasattr(error, "cause"):
                error.cause = cause_with_request_id(error.cause, invocations[-1])
                error.args = (f"{getattr(error, 'error', '')}: {error.cause}",)
            raise
        finally:
            _TASK_INVOCATIONS.reset(token)
        is_invoke_response = isinstance(result, Mapping) and set(result) == {"StatusCode", "Payload"}
        if not invocations or "states:::lambda:invoke" not in resource_text or not is_invoke_response:
            return result
        return lambda_invoke_output(result["Payload"], invocations[-1])

    return invoke_with_request_id


def apply_request_ids() -> None:
    """Patch the engine: Lambda Tasks carry their invocation's request id (before Task timeouts wrap it)."""
    from ministack.services import lambda_svc, stepfunctions

    lambda_svc._execute_function_dispatch = recording_invocations(lambda_svc._execute_function_dispatch)
    stepfunctions._invoke_resource = with_request_ids(
        stepfunctions._invoke_resource, stepfunctions._ExecutionError
    )
