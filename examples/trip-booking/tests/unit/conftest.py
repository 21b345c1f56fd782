"""Unit tests of the trip-booking handlers: plain functions, no engine, no AWS."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

PROJECT = Path(__file__).resolve().parents[2]

# Where Lambda puts the layer's python/ folder (/opt/python): on the import path.
sys.path.insert(0, str(PROJECT / "layers" / "common" / "python"))


def load_app(folder: str) -> ModuleType:
    """The ``app`` module of the function in ``folder`` (each function has its own app.py)."""
    spec = importlib.util.spec_from_file_location(f"trip_booking_{folder}_app", PROJECT / folder / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def app_of() -> Callable[[str], ModuleType]:
    """Load a function's ``app`` module by its folder name."""
    return load_app
