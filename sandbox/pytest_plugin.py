"""The saga sandbox as pytest fixtures, registered by `pip install` (the ``pytest11`` entry point).

A test asks for ``sandbox_stack`` (a running engine with the stack deployed, for the session) or
``place_order`` (an order with faults, followed to its end), then asserts with
``sandbox.testing`` (``assert_completed``, ``assert_compensated``, ``assert_exactly_once``, ...).
Nothing starts until a test asks for a fixture: this module imports only pytest at collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox.testing import OrderResult, SandboxStack

ENGINE_CHOICES = ("embedded", "localstack", "ministack-docker")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandbox", "saga sandbox: a local AWS engine with a stack deployed")
    group.addoption(
        "--sandbox-template",
        help="Your project's template.yaml (its folder is the project: CodeUri paths are relative to it; "
        "default: the sandbox's own).",
    )
    group.addoption(
        "--sandbox-engine", choices=ENGINE_CHOICES, help="The engine to start (default: embedded)."
    )
    group.addoption(
        "--sandbox-reuse",
        action="store_true",
        help="Use the engine `sandbox up` started (its state folder: SANDBOX_STATE_DIR) instead of "
        "starting one; it is left running.",
    )
    parser.addini("sandbox_template", "The SAM template to deploy (default: the sandbox's own).")
    parser.addini("sandbox_engine", "The engine to start: embedded, localstack or ministack-docker.")


def _option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--sandbox-{name}") or config.getini(f"sandbox_{name}")
    return str(value) if value else None


@pytest.fixture(scope="session")
def sandbox_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxStack]:
    """A running local engine with the stack deployed; started for the session and stopped after it."""
    from sandbox.engine import find_free_port, stop_engine
    from sandbox.settings import Settings
    from sandbox.stack import bring_up, find_stack
    from sandbox.testing import SandboxStack

    config = request.config
    if config.getoption("--sandbox-reuse"):
        settings = Settings.load()
        yield SandboxStack(settings, find_stack(settings))
        return
    template = _option(config, "template")
    if template and Path(template).name != "template.yaml":
        raise pytest.UsageError(f"--sandbox-template {template}: name the project's template.yaml")
    settings = Settings.load(
        port=find_free_port(),
        state_dir=tmp_path_factory.mktemp("sandbox-engine"),
        engine=_option(config, "engine"),
        project_dir=Path(template).resolve().parent if template else None,
    )
    try:
        yield SandboxStack(settings, bring_up(settings).stack)
    finally:
        stop_engine(settings)


@pytest.fixture
def place_order(sandbox_stack: SandboxStack) -> Callable[..., OrderResult]:
    """Place an order through the HTTP API (faults as the CLI's flags) and wait until its saga ends."""
    return sandbox_stack.place


@pytest.fixture
def sandbox_reset(sandbox_stack: SandboxStack) -> SandboxStack:
    """The stack with its tables and queues emptied and the demo inventory reseeded, for this test."""
    sandbox_stack.reset()
    return sandbox_stack
