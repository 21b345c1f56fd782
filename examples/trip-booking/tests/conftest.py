"""Run this project's engine tests only in a pytest session that deploys this project's template.

The sandbox's ``sandbox_stack`` fixture deploys one template per session. `pytest` in this folder
deploys ``template.yaml`` (``sandbox_template`` in pytest.ini); a session started elsewhere that
collects these tests deploys another one, so there they are skipped with a line saying where to run them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
TEMPLATE = PROJECT / "template.yaml"


def _session_template(config: pytest.Config) -> Path | None:
    """The template this session's ``sandbox_stack`` deploys, when it names one."""
    option = config.getoption("--sandbox-template", default=None)
    if option:
        return (config.invocation_params.dir / option).resolve()
    try:
        ini = config.getini("sandbox_template")
    except ValueError:  # the sandbox's pytest plugin is not installed
        return None
    if ini and config.inipath is not None:
        return (config.inipath.parent / str(ini)).resolve()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _session_template(config) == TEMPLATE:
        return
    skip = pytest.mark.skip(reason=f"deploys the trip-booking template: run `pytest` in {PROJECT}")
    for item in items:
        if item.path.is_relative_to(PROJECT / "tests") and not item.path.is_relative_to(
            PROJECT / "tests" / "unit"
        ):
            item.add_marker(skip)
