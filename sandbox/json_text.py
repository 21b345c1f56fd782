"""JSON texts of the AWS APIs (execution input and output, task results, causes) read as data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sandbox.errors import UsageError


def parse_json(text: Any) -> Any:
    """The data a JSON text holds; anything else (None, not JSON, already data) as it is."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_document(path: Path, what: str) -> Any:
    """A YAML or JSON file's data (JSON is YAML); UsageError naming ``what`` it should have been."""
    import yaml  # PyYAML: only where such a file is read

    try:
        return yaml.safe_load(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read the {what} {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise UsageError(f"the {what} {path} is neither YAML nor JSON: {error}") from error
