"""Project folders and zips for packaging tests: write a tree of files, list a zip's names."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root``; return ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def names_in(content: bytes) -> list[str]:
    """The names in a zip, once it has proved readable."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        return archive.namelist()
