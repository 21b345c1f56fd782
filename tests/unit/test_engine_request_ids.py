"""A Lambda Task carries its invocation's request id, as AWS's lambda:invoke response does."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from sandbox.engine_patches import (
    LAMBDA_INVOKE,
    LambdaInvocation,
    cause_with_request_id,
    lambda_invoke_output,
    recording_invocations,
    with_request_ids,
)
from sandbox.trace.execution import request_id_of


class TaskError(Exception):
    """Stands in for the engine's _ExecutionError (error, cause)."""

    def __init__(self, error: str, cause: str) -> None:
        self.error, self.cause = error, cause
        super().__init__(f"{error}: {cause}")


def engine(
    request_id: str,
    *,
    config: dict[str, Any] | None = None,
    payload: Any = None,
    failure: TaskError | None = None,
) -> Any:
    """The engine's Task dispatch over a dispatch that draws ``request_id``, patched as the sandbox patches it."""
    settings = config if config is not None else {"Version": "$LATEST", "Runtime": "python3.12"}

    @recording_invocations
    def dispatch(func: Any, config: Any, event: Any, request_id: str, started: float) -> dict[str, Any]:
        if failure is not None:
            raise failure
        return {"body": payload}

    def invoke_resource(resource: str, input_data: Any) -> Any:
        result = dispatch({}, settings, input_data.get("Payload"), request_id, 0.0)
        if "states:::lambda:invoke" in resource:
            return {"StatusCode": 200, "Payload": result["body"]}
        return result["body"]

    return with_request_ids(invoke_resource, TaskError)


def test_a_lambda_invoke_task_answers_with_awss_response_and_the_invocations_request_id() -> None:
    # GIVEN an invocation the engine dispatches under request id r-1
    invoke = engine("r-1", payload={"reserved": True})
    # WHEN a lambda:invoke Task runs
    output = invoke(LAMBDA_INVOKE, {"FunctionName": "f", "Payload": {"a": 1}})
    # THEN its result is AWS's response shape, carrying that request id
    assert list(output) == [
        "ExecutedVersion",
        "Payload",
        "SdkHttpMetadata",
        "SdkResponseMetadata",
        "StatusCode",
    ]
    assert output["Payload"] == {"reserved": True}
    assert output["ExecutedVersion"] == "$LATEST" and output["StatusCode"] == 200
    assert output["SdkResponseMetadata"] == {"RequestId": "r-1"}
    assert output["SdkHttpMetadata"]["HttpHeaders"]["x-amzn-RequestId"] == "r-1"
    assert output["SdkHttpMetadata"]["HttpStatusCode"] == 200
    # AND the trace reads the id from it
    assert request_id_of(json.dumps(output)) == "r-1"


def test_the_executed_version_is_the_one_the_qualifier_resolved_to() -> None:
    # GIVEN an invocation of version 3 (an alias resolved to it)
    invoke = engine("r-2", config={"Version": "3", "Runtime": "python3.12"}, payload=1)
    # WHEN the Task runs THEN the response names version 3, in the body and the header
    output = invoke(LAMBDA_INVOKE, {"FunctionName": "f:live", "Payload": {}})
    assert output["ExecutedVersion"] == "3"
    assert output["SdkHttpMetadata"]["HttpHeaders"]["X-Amz-Executed-Version"] == "3"


def test_a_function_arn_resource_answers_with_the_payload_alone_as_on_aws() -> None:
    # GIVEN a Task whose Resource is the function's ARN (the legacy form)
    invoke = engine("r-3", payload={"ok": True})
    # WHEN it runs THEN its result is the function's payload, unchanged
    assert invoke("arn:aws:lambda:us-east-1:000000000000:function:f", {"Payload": {}}) == {"ok": True}


def test_other_resources_pass_through_without_collecting_invocations() -> None:
    # GIVEN a non-Lambda Task resource
    seen: list[tuple[str, Any]] = []
    invoke = with_request_ids(
        lambda resource, data: seen.append((resource, data)) or {"MessageId": "m"}, TaskError
    )
    # WHEN it runs THEN the engine's result is returned as it was
    assert invoke("arn:aws:states:::sns:publish", {"Message": "x"}) == {"MessageId": "m"}
    assert seen == [("arn:aws:states:::sns:publish", {"Message": "x"})]


def test_an_invocation_outside_a_task_is_not_recorded() -> None:
    # GIVEN a dispatch outside any Task (a direct Invoke, a stream delivery)
    calls: list[str] = []
    dispatch = recording_invocations(
        lambda func, config, event, request_id, started: calls.append(request_id)
    )
    # WHEN it runs THEN it is the engine's, untouched
    dispatch({}, {}, {}, "r-4", 0.0)
    assert calls == ["r-4"]


def test_concurrent_tasks_each_get_their_own_request_id() -> None:
    # GIVEN one patched Task dispatch whose invocations draw ids from the calling thread's name
    @recording_invocations
    def dispatch(func: Any, config: Any, event: Any, request_id: str, started: float) -> dict[str, Any]:
        barrier.wait(5)  # both invocations in flight at once
        return {"body": request_id}

    def invoke_resource(resource: str, input_data: Any) -> Any:
        return {
            "StatusCode": 200,
            "Payload": dispatch({}, {}, {}, threading.current_thread().name, 0.0)["body"],
        }

    invoke = with_request_ids(invoke_resource, TaskError)
    barrier = threading.Barrier(2)
    outputs: dict[str, Any] = {}

    def run() -> None:
        outputs[threading.current_thread().name] = invoke(LAMBDA_INVOKE, {"Payload": {}})

    threads = [threading.Thread(target=run, name=name) for name in ("a", "b")]
    # WHEN two Tasks run at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # THEN each result names its own invocation
    assert {name: output["SdkResponseMetadata"]["RequestId"] for name, output in outputs.items()} == {
        "a": "a",
        "b": "b",
    }
    assert all(output["Payload"] == name for name, output in outputs.items())


def python_error(error_type: str = "TransientStepError") -> str:
    return json.dumps({"errorType": error_type, "errorMessage": "boom", "stackTrace": ["  File x\n"]})


def test_a_failed_python_invocation_names_its_request_in_the_cause_in_awss_order() -> None:
    # GIVEN a Python handler that raised, under request id r-5
    invoke = engine("r-5", failure=TaskError("TransientStepError", python_error()))
    # WHEN the Task runs THEN its cause is the runtime's payload with the request id, as AWS's
    with pytest.raises(TaskError) as failed:
        invoke(LAMBDA_INVOKE, {"Payload": {}})
    cause = json.loads(failed.value.cause)
    assert list(cause) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert cause["requestId"] == "r-5" and cause["errorType"] == "TransientStepError"
    assert failed.value.error == "TransientStepError"


def test_an_init_failure_names_no_request_as_awss_python_runtime() -> None:
    # GIVEN a Python function whose module failed to import (the handler never ran)
    cause = cause_with_request_id(
        python_error("Runtime.ImportModuleError"), LambdaInvocation("r-6", runtime="python3.12")
    )
    # THEN the cause has the runtime's empty request id
    assert json.loads(cause)["requestId"] == ""


@pytest.mark.parametrize(
    ("cause", "runtime"),
    [
        (json.dumps({"errorType": "Error", "errorMessage": "boom", "trace": []}), "nodejs20.x"),
        (json.dumps({"errorType": "Lambda.TooManyRequestsException", "errorMessage": "Rate"}), "python3.12"),
        ("Task timed out", "python3.12"),
        (
            json.dumps({"errorType": "X", "errorMessage": "m", "requestId": "kept", "stackTrace": []}),
            "python3.12",
        ),
    ],
    ids=["node error", "throttle", "not a payload", "already named"],
)
def test_causes_that_carry_no_request_id_on_aws_are_kept(cause: str, runtime: str) -> None:
    # GIVEN a cause AWS does not put a request id in WHEN it is amended THEN it is unchanged
    assert cause_with_request_id(cause, LambdaInvocation("r-7", runtime=runtime)) == cause


def test_the_response_headers_carry_the_payloads_length_and_the_date() -> None:
    # GIVEN a payload WHEN the response is built THEN its headers describe it as AWS's do
    output = lambda_invoke_output({"a": 1}, LambdaInvocation("r-8"), date="Mon, 01 Jan 2024 00:00:00 GMT")
    headers = output["SdkHttpMetadata"]["HttpHeaders"]
    assert headers["Content-Length"] == str(len('{"a":1}')) and headers["Date"].endswith("GMT")
    assert output["SdkHttpMetadata"]["AllHttpHeaders"]["x-amzn-RequestId"] == ["r-8"]
