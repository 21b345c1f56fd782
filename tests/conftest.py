"""How `make test` spreads the suite over pytest-xdist workers (``-n N --dist loadscope``).

Each worker is a pytest session of its own, with its own engine (the plugin's ``sandbox_stack``:
a free port, a state folder under the worker's temp folder). A module runs whole on one worker, so
its module-scoped fixtures (a chaos run, a `sandbox up` of its own) run once; the browser tests
share one Chromium and the container tests one container, so each of those folders runs whole on
one worker. The tests that use an engine are handed out first: most of their time is spent
waiting (a Task's timeout, a Retry's interval), and the quick unit tests fill the workers' gaps
at the end. Without ``-n`` nothing here changes the run.

The browser and container folders print one summary line each (CI checks them). Their conftests
count the reports they see; in a distributed run the workers send every report to the controller,
which collects nothing and so never loads those conftests: it loads them here, to print each line
once.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

# Folders whose tests share one expensive session fixture: one worker runs all of them.
SHARED_FOLDERS = ("tests/browser/", "tests/containers/")
# Folders whose tests wait on no engine: handed out last.
QUICK_FOLDERS = ("tests/unit/",)
# The conftests that count their folder's reports and print its summary line.
SUMMARY_CONFTESTS = ("tests.browser.conftest", "tests.containers.conftest")


def is_worker(config: pytest.Config) -> bool:
    """Whether this session is an xdist worker of a distributed run."""
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    """Whether this session hands the tests to xdist workers (``-n``) instead of running them."""
    return not is_worker(config) and config.getoption("dist", "no") != "no"


def scope_of(nodeid: str) -> str:
    """What one worker runs whole: the test's shared folder, else its module."""
    return next((folder for folder in SHARED_FOLDERS if nodeid.startswith(folder)), nodeid.split("::")[0])


def pytest_configure(config: pytest.Config) -> None:
    if not is_controller(config):
        return
    loaded = {
        Path(plugin.__file__).resolve()
        for plugin in config.pluginmanager.get_plugins()
        if isinstance(getattr(plugin, "__file__", None), str)
    }
    for name in SUMMARY_CONFTESTS:
        path = config.rootpath.joinpath(*name.split(".")).with_suffix(".py")
        if path.resolve() not in loaded:  # `pytest -n 2 tests/browser` loaded it already
            config.pluginmanager.register(importlib.import_module(name), f"summary-{name}")


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # an xdist hook, on the controller
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` with the shared folders as one scope each (xdist's own ``loadgroup``
    cannot rename the tests' node ids on this pytest)."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return SuiteScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_worker(config):  # stable: modules keep their order within each kind, on every worker
        items.sort(key=lambda item: item.nodeid.startswith(QUICK_FOLDERS))
