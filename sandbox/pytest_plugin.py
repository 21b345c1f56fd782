"""The saga sandbox as pytest fixtures, registered by `pip install` (the ``pytest11`` entry point).

A test asks for ``sandbox_stack`` (a running engine with your template deployed, for the
session), runs a state machine with ``sandbox_stack.execute(..., faults=["ChargeCard:error-after"])``
and asserts on the execution with ``sandbox.testing`` (``assert_succeeded``, ``assert_failed``,
``assert_states``, ``assert_compensated``) and on the stack's records. ``sandbox_faults`` adds
fault rules for one test and clears them after it. On the bundled order demo, ``place_order``
places an order with the demo's faults and the same assertions take it. ``assert_history(execution,
"NAME")`` compares an execution's normalized history with the project's ``histories/NAME.json``
(``--sandbox-update-histories`` records it instead). Nothing starts until a
test asks for a fixture: this module imports only pytest at collection.

A project creates what its template expects from outside (SSM parameters, another stack's table)
in a ``sandbox_before_deploy(environment)`` hook of its conftest.py: it runs once the engine
answers, before the deploy, with the engine's endpoint, region and dummy credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox.engine.clock import EngineClock
    from sandbox.histories import HistoryCheck
    from sandbox.testing import FaultRules, OrderResult, SandboxStack

ENGINE_CHOICES = ("embedded", "localstack", "ministack-docker")


class SandboxHooks:
    """Hooks a project's conftest.py may implement."""

    @pytest.hookspec(firstresult=False)
    def sandbox_before_deploy(self, environment: dict[str, str]) -> None:
        """Called once the engine answers, before the deploy: AWS_ENDPOINT_URL, AWS_REGION, keys."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(SandboxHooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandbox", "saga sandbox: a local AWS engine with a stack deployed")
    group.addoption(
        "--sandbox-template",
        help="Your project's SAM template, any file name (its folder is the project: CodeUri paths are "
        "relative to it; default: template.yaml of the current folder, else the bundled demo).",
    )
    group.addoption(
        "--sandbox-config-env", help="The samconfig environment to read (default: local, else default)."
    )
    group.addoption(
        "--sandbox-parameter-overrides",
        action="append",
        help="Template parameters as Name=Value pairs, merged over samconfig's (may repeat).",
    )
    group.addoption(
        "--sandbox-engine", choices=ENGINE_CHOICES, help="The engine to start (default: embedded)."
    )
    group.addoption(
        "--sandbox-update-histories",
        action="store_true",
        help="assert_history records each execution's history as the saved one (histories/NAME.json) "
        "instead of comparing with it.",
    )
    group.addoption(
        "--sandbox-reuse",
        action="store_true",
        help="Use the engine `sandbox up` started (its state folder: SANDBOX_STATE_DIR) instead of "
        "starting one; it is left running.",
    )
    group.addoption(
        "--sandbox-time-scale",
        metavar="N|max",
        help="Run the saga's clock N times faster (Wait states, retries, timeouts; budgets keep a floor), "
        "or max: waits skipped (default: SANDBOX_TIME_SCALE, else the default clock).",
    )
    parser.addini(
        "sandbox_template", "The SAM template to deploy, relative to this file (default: as above)."
    )
    parser.addini("sandbox_engine", "The engine to start: embedded, localstack or ministack-docker.")
    parser.addini("sandbox_config_env", "The samconfig environment to read.")
    parser.addini("sandbox_parameter_overrides", "Template parameters as Name=Value pairs.", type="args")


def _option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--sandbox-{name}") or config.getini(f"sandbox_{name.replace('-', '_')}")
    return str(value) if value else None


def _template(config: pytest.Config) -> Path | None:
    """The template named on the command line (from the current folder) or in the ini file (from its folder)."""
    named = config.getoption("--sandbox-template")
    if named:
        return Path(named).resolve()
    ini = config.getini("sandbox_template")
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return (base / str(ini)).resolve()
    return None


def _time_scale(config: pytest.Config) -> float | None:
    """The saga clock's speed-up named by --sandbox-time-scale (None: the environment's, else the default)."""
    from sandbox.settings import time_scale_of

    return time_scale_of(config.getoption("--sandbox-time-scale"), "--sandbox-time-scale")


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
    from sandbox.errors import SandboxError
    from sandbox.samconfig import parse_key_values

    template = _template(config)
    if template is not None and not template.is_file():
        raise pytest.UsageError(f"--sandbox-template {template}: no such file")
    overrides = config.getoption("--sandbox-parameter-overrides") or config.getini(
        "sandbox_parameter_overrides"
    )
    try:
        settings = Settings.load(
            port=find_free_port(),
            state_dir=tmp_path_factory.mktemp("sandbox-engine"),
            engine=_option(config, "engine"),
            template_file=template,
            config_env=_option(config, "config-env"),
            parameter_overrides=parse_key_values(overrides, what="sandbox parameter overrides") or None,
            time_scale=_time_scale(config),
        )
    except SandboxError as error:
        raise pytest.UsageError(f"{error}" + (f" ({error.hint})" if error.hint else "")) from error
    hook = config.pluginmanager.hook.sandbox_before_deploy
    try:
        yield SandboxStack(
            settings, bring_up(settings, before_deploy=lambda env: hook(environment=env)).stack
        )
    finally:
        stop_engine(settings)


@pytest.fixture
def sandbox_faults(sandbox_stack: SandboxStack) -> Iterator[FaultRules]:
    """Fault rules for this test (``add(TARGET, KIND, attempts=..., ...)``, ``load(PLAN)``); cleared after it."""
    from sandbox.testing import FaultRules

    rules = FaultRules(sandbox_stack)
    try:
        yield rules
    finally:
        rules.clear()


@pytest.fixture
def sandbox_clock(sandbox_stack: SandboxStack) -> Iterator[Callable[[float | str | None], EngineClock]]:
    """Set the engine's saga clock for this test (``sandbox_clock(10)``, ``"max"``); put back after it."""
    from contextlib import ExitStack

    from sandbox.engine.clock import engine_clock_at
    from sandbox.settings import time_scale_of

    with ExitStack() as stack:

        def at(scale: float | str | None) -> EngineClock:
            speedup = time_scale_of(str(scale), "sandbox_clock") if scale is not None else None
            return stack.enter_context(engine_clock_at(sandbox_stack.stack.engine.endpoint_url, speedup))

        yield at


@pytest.fixture
def place_order(sandbox_stack: SandboxStack) -> Callable[..., OrderResult]:
    """The order demo's: place an order (faults as the CLI's flags) and wait until its saga ends."""
    return sandbox_stack.place


@pytest.fixture
def assert_history(request: pytest.FixtureRequest, sandbox_stack: SandboxStack) -> HistoryCheck:
    """``assert_history(execution, "NAME", mask=[...])``: its history is the project's histories/NAME.json
    (a diff when not); with --sandbox-update-histories, it is recorded as that instead."""
    from sandbox.histories import HistoryCheck, LocalHistories, histories_folder

    settings = sandbox_stack.settings
    return HistoryCheck(
        LocalHistories(sandbox_stack.stack, settings.region, settings.stack_name),
        histories_folder(settings.project_dir),
        update=bool(request.config.getoption("--sandbox-update-histories")),
    )


@pytest.fixture
def sandbox_reset(sandbox_stack: SandboxStack) -> SandboxStack:
    """The stack with its tables and queues emptied and the demo inventory reseeded, for this test."""
    sandbox_stack.reset()
    return sandbox_stack
