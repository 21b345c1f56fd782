"""The engine patches run on the pinned engine only, and every engine name they touch exists in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandbox.engine_patches import (
    PINNED_ENGINE_VERSION,
    READ,
    REPLACED,
    WORKER_TTL_ENV,
    WORKERS_ENV,
    EnginePatchError,
    check_engine,
    missing_engine_names,
)


def test_every_engine_name_the_patches_replace_or_read_exists_in_the_installed_engine() -> None:
    # GIVEN the installed engine WHEN each listed name is looked up THEN none is missing
    assert missing_engine_names(REPLACED + READ) == []
    # AND the worker attributes the patches read are set on a new worker
    from ministack.core.lambda_runtime import Worker

    worker = Worker("f", {"Runtime": "python3.11"}, b"")
    assert worker._proc is None and worker.config == {"Runtime": "python3.11"} and worker.last_used > 0


# Runs in its own interpreter: the patches change the engine's modules for the whole process.
SNAPSHOT_PROBE = """
import json
from sandbox import engine_patches
from ministack.core import lambda_runtime
import ministack.app
from ministack.services import lambda_svc, stepfunctions
owners = {
    "ministack.app": ministack.app,
    "ministack.services.lambda_svc": lambda_svc,
    "ministack.core.lambda_runtime": lambda_runtime,
    "ministack.core.lambda_runtime.Worker": lambda_runtime.Worker,
    "ministack.core.lambda_runtime.ProvidedWorker": lambda_runtime.ProvidedWorker,
    "ministack.services.stepfunctions": stepfunctions,
}
def snapshot():
    return {f"{prefix}.{name}": (id(value), id(getattr(value, "__code__", None)))
            for prefix, owner in owners.items() for name, value in vars(owner).items()}
before = snapshot()
engine_patches.apply_patches()
after = snapshot()
print(json.dumps(sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))))
"""


def test_the_patches_replace_exactly_the_names_they_list() -> None:
    # GIVEN the engine's modules and worker classes before and after the patches
    env = {key: value for key, value in os.environ.items() if key != WORKER_TTL_ENV}
    env[WORKERS_ENV] = "7"  # not the engine's default, so the assignment shows
    probe = subprocess.run(
        [sys.executable, "-c", SNAPSHOT_PROBE], capture_output=True, text=True, timeout=60, env=env
    )
    assert probe.returncode == 0, probe.stderr
    # WHEN the names that changed are compared with REPLACED THEN they are the same
    changed = json.loads(probe.stdout.strip().splitlines()[-1])
    assert sorted(changed) == sorted(REPLACED)


def test_an_engine_that_is_not_the_pinned_version_is_refused_naming_both_versions() -> None:
    # GIVEN another engine version WHEN it is checked THEN the error names it and the pin
    with pytest.raises(EnginePatchError) as refused:
        check_engine("9.9.9")
    message = str(refused.value)
    assert "9.9.9" in message and PINNED_ENGINE_VERSION in message
    assert "\n" not in message


def test_an_engine_lacking_a_name_the_patches_need_is_refused_before_anything_is_patched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the pinned engine without one of the names the patches read
    from ministack.services import lambda_svc

    monkeypatch.delattr(lambda_svc, "_iter_all_esms")
    # WHEN it is checked THEN the missing name is named
    with pytest.raises(
        EnginePatchError, match=r"lacks what the sandbox patches: .*lambda_svc\._iter_all_esms"
    ):
        check_engine(PINNED_ENGINE_VERSION)
    # AND nothing was patched
    assert lambda_svc._execute_function.__module__ == "ministack.services.lambda_svc"


def test_missing_names_are_reported_whatever_is_missing_a_module_a_class_or_an_attribute() -> None:
    names = (
        "ministack.services.lambda_svc._no_such_function",
        "ministack.no_such_module.anything",
        "ministack.core.lambda_runtime.Worker.no_such_method",
        "ministack.core.lambda_runtime.Worker.invoke",
    )
    assert missing_engine_names(names) == list(names[:3])


LAUNCH_ON_ANOTHER_VERSION = """
import importlib.metadata
importlib.metadata.version = lambda name: "9.9.9"
from sandbox.engine_patches import main
main()
"""


def test_the_launcher_on_another_engine_version_exits_with_one_line_naming_both_versions() -> None:
    # GIVEN the launcher on an engine reporting another version
    launch = subprocess.run(
        [sys.executable, "-c", LAUNCH_ON_ANOTHER_VERSION], capture_output=True, text=True, timeout=60
    )
    # WHEN it starts THEN it exits 1 with one line (what `sandbox up` shows from the engine log)
    assert launch.returncode == 1
    assert launch.stdout == ""
    lines = launch.stderr.strip().splitlines()
    assert len(lines) == 1, launch.stderr
    assert "9.9.9" in lines[0] and PINNED_ENGINE_VERSION in lines[0]
    assert lines[0].startswith("sandbox engine refused to start:")
