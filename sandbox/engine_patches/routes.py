"""The sandbox's own routes on the engine's ASGI app: JSON in, JSON out, beside the AWS APIs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[..., Awaitable[None]]
# (method, path, query string, body) -> (status, JSON answer)
Handler = Callable[[str, str, str, bytes], tuple[int, Any]]


def with_json_route(app: App, route: str, handle: Handler) -> App:
    """The engine's ASGI app, answering ``route`` and the paths under it with ``handle``."""

    async def app_with_route(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if not (path == route or path.startswith(route + "/")):
            await app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode()
        status, answer = handle(scope.get("method", "GET"), path, query, body)
        encoded = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": encoded})

    return app_with_route
