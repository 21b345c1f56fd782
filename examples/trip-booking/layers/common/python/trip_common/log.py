"""One JSON line per log event, on stdout (what CloudWatch Logs keeps from a Lambda function)."""

from __future__ import annotations

import json
from typing import Any


def log(message: str, **fields: Any) -> None:
    """Print ``message`` and its fields as one JSON line."""
    print(json.dumps({"message": message, **fields}, default=str))
