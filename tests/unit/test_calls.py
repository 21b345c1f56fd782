"""The engine's count of AWS API calls by service and operation, and of Lambda invocations by function."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from sandbox.engine_patches.calls import (
    ROUTE,
    CallCounts,
    counting_invocations,
    name_call,
    with_call_counts,
)

SIGNED = b"AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host"


def scope(
    path: str = "/",
    method: str = "POST",
    *,
    headers: dict[str, str] | None = None,
    service: str | None = None,
    query: str = "",
) -> dict[str, Any]:
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    if service:
        raw.append((b"authorization", SIGNED.replace(b"{service}", service.encode())))
    return {"type": "http", "method": method, "path": path, "headers": raw, "query_string": query.encode()}


@pytest.mark.parametrize(
    ("request_scope", "expected"),
    [
        (
            scope(headers={"X-Amz-Target": "DynamoDB_20120810.PutItem"}, service="dynamodb"),
            ("dynamodb", "PutItem"),
        ),
        (
            scope(headers={"X-Amz-Target": "DynamoDBStreams_20120810.GetRecords"}, service="dynamodb"),
            ("dynamodbstreams", "GetRecords"),
        ),
        (
            scope(headers={"X-Amz-Target": "AWSStepFunctions.StartExecution"}, service="states"),
            ("stepfunctions", "StartExecution"),
        ),
        (scope(headers={"X-Amz-Target": "AWSEvents.PutEvents"}, service="events"), ("events", "PutEvents")),
        (scope(headers={"X-Amz-Target": "AmazonSQS.SendMessage"}), ("sqs", "SendMessage")),
        (
            scope(query="Action=DescribeStacks&Version=2010-05-15", service="cloudformation"),
            ("cloudformation", "DescribeStacks"),
        ),
        (
            scope("/2015-03-31/functions/pay-fn/invocations", service="lambda"),
            ("lambda", "Invoke"),
        ),
        (
            scope("/2015-03-31/event-source-mappings/9f1c", "GET", service="lambda"),
            ("lambda", "GET /event-source-mappings/{}"),
        ),
        (scope("/bucket/path/to/code.zip", "PUT", service="s3"), ("s3", "PUT /{bucket}/{key}")),
        (
            scope("/bucket", "GET", service="s3", query="list-type=2&prefix=a"),
            ("s3", "GET /{bucket}?list-type&prefix"),
        ),
        (
            scope("/_aws/execute-api/7f1b0a45/api/orders", service="execute-api"),
            ("apigateway", "POST /orders"),
        ),
        (
            scope("/_aws/execute-api/7f1b0a45/api/orders/5f0c2a8e-3b4d-5e6f-8a9b-0c1d2e3f4a5b", "GET"),
            ("apigateway", "GET /orders/{}"),
        ),
        (
            scope("/api/orders/o-1", "GET", headers={"Host": "7f1b0a45.execute-api.localhost:4566"}),
            ("apigateway", "GET /orders/{}"),
        ),
        (scope("/", "GET"), ("unknown", "GET /")),
    ],
)
def test_each_protocol_names_its_calls_as_aws_does(
    request_scope: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert name_call(request_scope) == expected


def test_a_query_protocol_call_is_named_from_its_form_body() -> None:
    form = scope(headers={"Content-Type": "application/x-www-form-urlencoded"}, service="cloudformation")
    assert name_call(form, b"Version=2010-05-15&Action=CreateChangeSet&StackName=s") == (
        "cloudformation",
        "CreateChangeSet",
    )
    assert name_call(form, b"XAction=no") == ("cloudformation", "POST /")


@pytest.mark.parametrize("path", ["/_ministack/health", "/_sandbox/faults", "/_localstack/health"])
def test_the_engine_and_sandbox_routes_are_no_aws_calls(path: str) -> None:
    assert name_call(scope(path, "GET")) is None


def drive(app: Any, request_scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(request_scope, receive, send))
    return sent


class EngineApp:
    """The engine's app: reads the whole body, answers 200, remembers what it read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, request_scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.bodies.append((await receive()).get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def test_the_wrapped_app_counts_each_call_and_answers_the_route() -> None:
    # GIVEN the engine's app, counting
    counts, engine = CallCounts(), EngineApp()
    app = with_call_counts(engine, counts)
    put = scope(headers={"X-Amz-Target": "DynamoDB_20120810.PutItem"}, service="dynamodb")
    # WHEN two PutItems, a form-bodied CreateChangeSet and a watcher's (marked) GetItem reach it
    drive(app, put)
    drive(app, put)
    form = scope(headers={"Content-Type": "application/x-www-form-urlencoded"}, service="cloudformation")
    drive(app, form, b"Action=CreateChangeSet&StackName=s")
    watcher = scope(headers={"X-Amz-Target": "DynamoDB_20120810.GetItem", "x-sandbox-observer": "bench"})
    drive(app, watcher)
    # THEN the engine still read each body, and the route answers the counts, the watcher's apart
    assert engine.bodies[2] == b"Action=CreateChangeSet&StackName=s"
    answer = drive(app, scope(ROUTE, "GET"))
    assert answer[0]["status"] == 200
    assert json.loads(answer[1]["body"]) == {
        "calls": {"dynamodb": {"PutItem": 2}, "cloudformation": {"CreateChangeSet": 1}},
        "observer": {"dynamodb": {"GetItem": 1}},
        "invocations": {},
    }
    # AND clearing forgets them; the route's own requests are not counted
    cleared = drive(app, scope(ROUTE + "/clear", "POST"))
    assert json.loads(cleared[1]["body"]) == {"cleared": 4}
    assert counts.as_json() == {"calls": {}, "observer": {}, "invocations": {}}
    assert len(engine.bodies) == 4


def test_an_unknown_calls_route_is_a_404_and_other_scopes_pass_through() -> None:
    counts, engine = CallCounts(), EngineApp()
    app = with_call_counts(engine, counts)
    assert drive(app, scope(ROUTE + "/nope", "DELETE"))[0]["status"] == 404
    drive(app, {"type": "lifespan"})
    assert len(engine.bodies) == 1 and counts.clear() == 0


def test_invocations_are_counted_by_function_from_every_thread() -> None:
    # GIVEN the engine's invoke path, counting
    counts = CallCounts()
    invoke = counting_invocations(lambda func, event, *args, **kwargs: {"ok": event}, counts)

    # WHEN eight threads invoke two functions 100 times each
    def run() -> None:
        for index in range(100):
            invoke({"config": {"FunctionName": "pay-fn" if index % 2 else "ship-fn"}}, index)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN no count is lost, and the handler's result passes through
    assert counts.as_json()["invocations"] == {"pay-fn": 400, "ship-fn": 400}
    assert invoke({"FunctionName": "pay-fn"}, "e") == {"ok": "e"}
