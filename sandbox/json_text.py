"""JSON texts of the AWS APIs (execution input and output, task results, causes) read as data."""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: Any) -> Any:
    """The data a JSON text holds; anything else (None, not JSON, already data) as it is."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
