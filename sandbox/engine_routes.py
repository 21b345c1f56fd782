"""The sandbox's own routes on its engines (``/_sandbox/...``: calls, workers, debug), read as JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def engine_request(
    endpoint_url: str, route: str, *, method: str = "GET", body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    """One request to one of the sandbox's engine routes: (status, JSON answer); (0, None) when the
    engine cannot be reached or has no such route."""
    request = urllib.request.Request(
        endpoint_url.rstrip("/") + route,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            answer = json.loads(error.read() or b"{}")
        except ValueError:
            return 0, None  # not the sandbox's route: the engine answered in its own format
        return (error.code, answer) if isinstance(answer, dict) and "message" in answer else (0, None)
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def engine_route(endpoint_url: str, route: str, body: Any = None, timeout: float = 10) -> Any:
    """The JSON answer of one of the sandbox's engine routes (POST when there is a body); None when
    the engine has no such route, or cannot be reached."""
    status, answer = engine_request(
        endpoint_url, route, method="GET" if body is None else "POST", body=body, timeout=timeout
    )
    return answer if 200 <= status < 300 else None
