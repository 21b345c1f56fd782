"""Counts of the AWS API calls the engine answers, by service and operation, and Lambda invocations.

Every HTTP request to the engine's app is named as its protocol names it: JSON protocols by their
``X-Amz-Target`` (``DynamoDB_20120810.PutItem`` -> dynamodb PutItem), query protocols by their
``Action`` parameter, REST protocols (Lambda, S3) by method and path shape
(``POST /functions/{}/invocations``), and calls to a REST API (``/_aws/execute-api/...`` or an
``execute-api`` host) as ``apigateway`` with method and path shape. Calls inside the engine (a Step
Functions Task invoking a function, a stream mapping delivering) are no HTTP calls; each Lambda
invocation is counted apart, by function. A request carrying ``x-sandbox-observer`` is counted
apart too: a tool that watches a run (``sandbox bench`` polling the tables) marks its own calls so
that they are not taken for the run's.

The sandbox reads the counts at ``GET /_sandbox/calls`` and clears them with ``POST
/_sandbox/calls/clear``. Counting costs a dict update under a lock; the key is the only allocation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .routes import App, Receive, Send, with_json_route

ROUTE = "/_sandbox/calls"
OBSERVER_HEADER = b"x-sandbox-observer"
EXECUTE_API_PATH = "/_aws/execute-api/"
# Signing names people know by another name.
SERVICE_NAMES = {"states": "stepfunctions", "execute-api": "apigateway"}
# X-Amz-Target prefixes (before the version's underscore) whose signing name says less.
TARGET_SERVICES = {
    "DynamoDB": "dynamodb",
    "DynamoDBStreams": "dynamodbstreams",
    "AWSStepFunctions": "stepfunctions",
    "AWSEvents": "events",
    "AmazonSQS": "sqs",
    "Logs": "logs",
}
# Engine routes that are no AWS API (health, reset, the sandbox's own routes).
_INTERNAL_PREFIXES = ("/_ministack", "/_sandbox", "/_localstack")
_FORM = b"application/x-www-form-urlencoded"

Key = tuple[str, str, str]  # (kind, service or function, operation): kind "call", "observer" or "invoke"


class CallCounts:
    """Counts by key, behind one lock: the HTTP server's threads and the engine's invoke threads add."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Key, int] = {}

    def add(self, key: Key) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def clear(self) -> int:
        """Forget every count; how many calls and invocations were counted."""
        with self._lock:
            total = sum(self._counts.values())
            self._counts.clear()
        return total

    def as_json(self) -> dict[str, dict[str, dict[str, int]] | dict[str, int]]:
        """``{"calls": {service: {operation: n}}, "observer": {...}, "invocations": {function: n}}``."""
        with self._lock:
            counts = list(self._counts.items())
        calls: dict[str, dict[str, int]] = {}
        observer: dict[str, dict[str, int]] = {}
        invocations: dict[str, int] = {}
        for (kind, name, operation), count in counts:
            if kind == "invoke":
                invocations[name] = count
            else:
                (observer if kind == "observer" else calls).setdefault(name, {})[operation] = count
        return {"calls": calls, "observer": observer, "invocations": invocations}


COUNTS = CallCounts()


def _segment_shape(segment: str) -> str:
    """A path segment as a shape: an id (any digit, or long) becomes ``{}``."""
    if len(segment) >= 24 or any(c.isdigit() for c in segment):
        return "{}"
    return segment


def api_shape(path: str) -> str:
    """A REST API's path as a shape: ``/orders/5f0c…`` -> ``/orders/{}``."""
    return "/" + "/".join(_segment_shape(s) for s in path.split("/") if s)


def rest_shape(path: str) -> str:
    """An AWS REST API's path as a shape: collection, id, collection, id (a date version dropped)."""
    segments = [s for s in path.split("/") if s]
    if segments and len(segments[0]) == 10 and segments[0][:4].isdigit() and segments[0][4] == "-":
        segments = segments[1:]  # /2015-03-31/functions/...
    return "/" + "/".join("{}" if index % 2 else s for index, s in enumerate(segments))


def s3_shape(path: str, query: str) -> str:
    """An S3 path as a shape: ``/{bucket}``, ``/{bucket}/{key}``, with its sub-resource names."""
    parts = path.lstrip("/").split("/", 1)
    shape = "/" if not parts[0] else "/{bucket}" if len(parts) == 1 or not parts[1] else "/{bucket}/{key}"
    names = sorted(p.split("=", 1)[0] for p in query.split("&") if p and not p.startswith("X-Amz-"))
    return shape + ("?" + "&".join(names) if names else "")


def _signing_service(authorization: bytes) -> str | None:
    """The service of a SigV4 ``Credential=KEY/DATE/REGION/SERVICE/aws4_request`` scope."""
    end = authorization.find(b"/aws4_request")
    if end < 0:
        return None
    start = authorization.rfind(b"/", 0, end)
    return authorization[start + 1 : end].decode("ascii", "replace") if start >= 0 else None


def _action(query: bytes) -> str | None:
    """The ``Action`` parameter of a query string or form body, None without one."""
    start = query.find(b"Action=")
    while start > 0 and query[start - 1 : start] != b"&":
        start = query.find(b"Action=", start + 1)
    if start < 0:
        return None
    end = query.find(b"&", start)
    return query[start + 7 : end if end >= 0 else len(query)].decode("ascii", "replace")


def name_call(scope: dict[str, Any], body: bytes = b"") -> tuple[str, str] | None:
    """(service, operation) of one HTTP request, as its protocol names it; None for an engine route."""
    path: str = scope.get("path", "")
    if path.startswith(EXECUTE_API_PATH):
        # /_aws/execute-api/{apiId}/{stage}/{path...}
        rest = path[len(EXECUTE_API_PATH) :].split("/", 2)
        return "apigateway", f"{scope.get('method', 'GET')} {api_shape(rest[2] if len(rest) > 2 else '')}"
    if path.startswith(_INTERNAL_PREFIXES):
        return None
    target = authorization = host = content_type = b""
    for name, value in scope.get("headers") or ():
        if name == b"x-amz-target":
            target = value
        elif name == b"authorization":
            authorization = value
        elif name == b"host":
            host = value
        elif name == b"content-type":
            content_type = value
    method = scope.get("method", "GET")
    if b".execute-api." in host:
        return "apigateway", f"{method} {api_shape(path.split('/', 2)[2] if path.count('/') > 1 else '')}"
    signed = _signing_service(authorization) if authorization else None
    if target:
        prefix, _, operation = target.decode("ascii", "replace").partition(".")
        service = TARGET_SERVICES.get(prefix.split("_")[0]) or signed or prefix.lower()
        return SERVICE_NAMES.get(service, service), operation or prefix
    service = SERVICE_NAMES.get(signed, signed) if signed else "unknown"
    query: bytes = scope.get("query_string") or b""
    action = _action(query) or (_action(body) if content_type.startswith(_FORM) else None)
    if action:
        return service, action
    if service == "s3":
        return service, f"{method} {s3_shape(path, query.decode('ascii', 'replace'))}"
    shape = rest_shape(path)
    if service == "lambda" and shape == "/functions/{}/invocations":
        return service, "Invoke"
    return service, f"{method} {shape}"


def _is_observer(scope: dict[str, Any]) -> bool:
    return any(name == OBSERVER_HEADER for name, _ in scope.get("headers") or ())


def handle_request(counts: CallCounts, method: str, path: str) -> tuple[int, Any]:
    """One request to the calls route: (status, JSON answer)."""
    rest = path[len(ROUTE) :].strip("/")
    if method == "GET" and rest == "":
        return 200, counts.as_json()
    if method == "POST" and rest == "clear":
        return 200, {"cleared": counts.clear()}
    return 404, {"message": f"no route {method} {path}"}


def with_call_counts(app: App, counts: CallCounts = COUNTS) -> App:
    """The engine's ASGI app, counting each AWS API request and answering the calls route itself."""
    return with_json_route(
        counting_calls(app, counts),
        ROUTE,
        lambda method, path, _query, _body: handle_request(counts, method, path),
    )


def counting_calls(app: App, counts: CallCounts = COUNTS) -> App:
    """The engine's ASGI app, counting each AWS API request it answers by service and operation."""

    async def app_counting_calls(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        kind = "observer" if _is_observer(scope) else "call"
        if not _needs_body(scope):
            named = name_call(scope)
            if named is not None:
                counts.add((kind, *named))
            await app(scope, receive, send)
            return
        # A query protocol's Action may be in its form body: named from the body's first chunk.
        first: list[bytes] = []

        async def receive_keeping_first() -> dict[str, Any]:
            message = await receive()
            if not first:
                first.append(message.get("body", b""))
            return message

        try:
            await app(scope, receive_keeping_first, send)
        finally:
            named = name_call(scope, first[0] if first else b"")
            if named is not None:
                counts.add((kind, *named))

    return app_counting_calls


def _needs_body(scope: dict[str, Any]) -> bool:
    """Whether only the body names the request: a form POST with no Action in its query."""
    if scope.get("method") != "POST" or b"Action=" in (scope.get("query_string") or b""):
        return False
    return any(
        name == b"content-type" and value.startswith(_FORM) for name, value in scope.get("headers") or ()
    )


def counting_invocations(
    execute: Callable[..., dict[str, Any]], counts: CallCounts = COUNTS
) -> Callable[..., dict[str, Any]]:
    """The engine's invoke path, counting each invocation by function name."""

    def run(func: dict[str, Any], event: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = func.get("config") or func
        counts.add(("invoke", str(config.get("FunctionName", "")), ""))
        return execute(func, event, *args, **kwargs)

    return run
