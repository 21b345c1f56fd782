"""The sandbox's own routes on its engines (``/_sandbox/...``: calls, workers), read as JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def engine_route(endpoint_url: str, route: str, body: Any = None, timeout: float = 10) -> Any:
    """The JSON answer of one of the sandbox's engine routes (POST when there is a body); None when
    the engine has no such route, or cannot be reached."""
    request = urllib.request.Request(
        endpoint_url.rstrip("/") + route,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None
