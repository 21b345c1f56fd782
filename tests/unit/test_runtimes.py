"""Preparing the Lambda runtimes: launchers that show a function only what AWS would show it."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from sandbox import runtimes
from sandbox.errors import DeployError
from sandbox.runtimes import (
    NODE_SDK_V2,
    NODE_SDK_V3_VERSION,
    Runtime,
    deprecation_warning,
    node_launch_script,
    prepare_runtimes,
)

ENGINE_PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"


class FakeInstalls:
    """pip and npm without the network: each install leaves a module to import; probes run for real."""

    def __init__(self, fail_with: str | None = None) -> None:
        self.installs: list[list[str]] = []
        self.fail_with = fail_with
        self.lock = threading.Lock()

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "install" in command:
            with self.lock:
                self.installs.append(command)
            if self.fail_with:
                return subprocess.CompletedProcess(command, 1, "", f"lots of output\n{self.fail_with}")
            target = Path(command[command.index("--target" if "--target" in command else "--prefix") + 1])
            if "--target" in command:
                (target / "boto3").mkdir(parents=True)
                (target / "boto3" / "__init__.py").write_text("__version__ = 'runtime'\n")
            else:
                (target / "node_modules" / "sdk").mkdir(parents=True)
            return subprocess.CompletedProcess(command, 0, "", "")
        if "compileall" in command:
            return subprocess.CompletedProcess(command, 0, "", "")
        return subprocess.run(command, **kwargs)  # interpreter probes: local, no network


def lines() -> tuple[list[str], Any]:
    said: list[str] = []
    return said, said.append


# ------------------------------------------------------------------------------ Python


def test_a_python_worker_sees_its_runtimes_boto3_and_no_site_packages(tmp_path: Path) -> None:
    # GIVEN the engine's own Python version prepared as a runtime
    installs = FakeInstalls()
    prepared = prepare_runtimes([ENGINE_PYTHON], tmp_path, run=installs)
    runtime = prepared[ENGINE_PYTHON]
    assert runtime.launch == tmp_path / ENGINE_PYTHON / "launch" and os.access(runtime.launch, os.X_OK)
    assert not runtime.is_fallback and runtime.version == ENGINE_PYTHON.removeprefix("python")
    # WHEN a script runs through its launcher
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys, boto3\nprint(boto3.__version__)\nprint([p for p in sys.path if 'site-packages' in p])\n"
        "try:\n    import pydantic\nexcept ImportError:\n    print('no pydantic')\n"
    )
    out = subprocess.run(
        [str(runtime.launch), str(script)], capture_output=True, text=True, check=True
    ).stdout
    # THEN it imports the runtime's boto3, sees no site-packages, and the venv's pydantic is not there
    assert out.splitlines() == ["runtime", "[]", "no pydantic"]
    # AND boto3 was installed for that interpreter's version, at most the venv's own version
    (pip,) = installs.installs
    assert pip[pip.index("--python-version") + 1] == runtime.version
    assert any(part.startswith("boto3<=") for part in pip) and any(
        part.startswith("botocore<=") for part in pip
    )


def test_a_second_prepare_installs_nothing(tmp_path: Path) -> None:
    installs = FakeInstalls()
    first = prepare_runtimes([ENGINE_PYTHON], tmp_path, run=installs)
    second = prepare_runtimes([ENGINE_PYTHON], tmp_path, run=installs)
    assert first == second
    assert len(installs.installs) == 1


def test_a_python_that_is_not_installed_runs_on_the_engines_with_one_line(tmp_path: Path) -> None:
    # GIVEN a runtime whose interpreter this machine lacks
    said, notify = lines()
    prepared = prepare_runtimes(["python3.99"], tmp_path, notify, run=FakeInstalls())
    # THEN its functions run on the engine's interpreter, and one line says so
    engine = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert prepared["python3.99"] == Runtime(
        "python3.99", sys.executable, engine, True, tmp_path / "python3.99" / "launch"
    )
    assert said == [f"python3.99 is not installed here: functions on python3.99 run on Python {engine}"]


def test_a_failed_install_is_a_deploy_error_with_pips_last_lines_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DeployError) as failed:
        prepare_runtimes(
            [ENGINE_PYTHON], tmp_path, run=FakeInstalls(fail_with="ERROR: No matching distribution")
        )
    assert "boto3" in str(failed.value) and "\n" not in str(failed.value)
    assert failed.value.details is not None and failed.value.details.endswith(
        "ERROR: No matching distribution"
    )
    assert not (tmp_path / ENGINE_PYTHON / "launch").exists()
    assert [path.name for path in (tmp_path / "sdk").iterdir()] == []


def test_concurrent_prepares_leave_one_complete_sdk(tmp_path: Path) -> None:
    # GIVEN two sandboxes preparing the same runtime at once
    installs = FakeInstalls()
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            prepare_runtimes([ENGINE_PYTHON], tmp_path, run=installs)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN both succeed, and one SDK folder is left, complete, with no staging folder beside it
    assert errors == []
    (sdk,) = (tmp_path / "sdk").iterdir()
    assert (sdk / ".complete").is_file() and (sdk / "boto3").is_dir()


def test_other_runtime_families_are_left_to_the_engine(tmp_path: Path) -> None:
    assert (
        prepare_runtimes(["java21", "provided.al2023", "dotnet8", "ruby3.3"], tmp_path, run=FakeInstalls())
        == {}
    )
    assert not (tmp_path / "java21").exists()


# ------------------------------------------------------------------------------ Node.js


def fake_node(folder: Path, version: str) -> Path:
    """A `node` that answers --version and otherwise prints the NODE_PATH it was started with."""
    folder.mkdir(parents=True, exist_ok=True)
    node = folder / "node"
    node.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo {version}; else echo "$NODE_PATH"; fi\n')
    node.chmod(0o755)
    (folder / "npm").write_text("#!/bin/sh\nexit 0\n")
    (folder / "npm").chmod(0o755)
    return node


@pytest.mark.parametrize(
    ("name", "package"),
    [("nodejs20.x", f"@aws-sdk/client-dynamodb@{NODE_SDK_V3_VERSION}"), ("nodejs16.x", NODE_SDK_V2)],
)
def test_a_node_runtime_gets_the_sdk_of_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, package: str
) -> None:
    # GIVEN node 20 on PATH
    node = fake_node(tmp_path / "bin", "v20.3.1")
    monkeypatch.setenv("PATH", f"{node.parent}{os.pathsep}{os.environ['PATH']}")
    installs = FakeInstalls()
    said, notify = lines()
    # WHEN the runtime is prepared
    runtime = prepare_runtimes(
        [name], tmp_path / "rt", notify, run=installs, today=datetime.date(2024, 1, 1)
    )[name]
    # THEN the runtime's SDK generation is installed, and node 20 runs it
    (npm,) = installs.installs
    assert package in npm
    assert (runtime.interpreter, runtime.version) == (str(node), "20")
    assert runtime.is_fallback == (name != "nodejs20.x")
    assert said == (
        []
        if name == "nodejs20.x"
        else ["nodejs16.x is not installed here: functions on nodejs16.x run on Node.js 20"]
    )
    # AND the SDK comes after the layers' NODE_PATH the engine sets, so a layer's own SDK wins
    assert runtime.launch is not None
    worker = tmp_path / "worker" / "_worker.js"
    worker.parent.mkdir()
    worker.write_text("")
    started = subprocess.run([str(runtime.launch), str(worker)], capture_output=True, text=True, check=True,
                             env={**os.environ, "NODE_PATH": "/layer/nodejs/node_modules"})  # fmt: skip
    sdk = next((tmp_path / "rt" / "sdk").iterdir())
    assert started.stdout.strip() == f"/layer/nodejs/node_modules:{sdk}/node_modules"
    # AND ES modules, which ignore NODE_PATH, find the SDK in a node_modules above the code folder
    assert (worker.parent / "node_modules").resolve() == (sdk / "node_modules").resolve()


def test_without_node_a_node_runtime_has_no_launcher_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a launcher left from a run when node was installed, and no node now
    stale = tmp_path / "nodejs20.x" / "launch"
    stale.parent.mkdir()
    stale.write_text("#!/bin/sh\n")
    monkeypatch.setattr(runtimes.shutil, "which", lambda name: None)
    said, notify = lines()
    # WHEN prepared THEN the engine keeps its own behaviour for those functions, and one line says why
    assert (
        prepare_runtimes(
            ["nodejs20.x"], tmp_path, notify, run=FakeInstalls(), today=datetime.date(2024, 1, 1)
        )
        == {}
    )
    assert not stale.exists()
    assert said == ["nodejs20.x functions cannot run: node is not installed here (install Node.js 20)"]


def test_a_node_launcher_without_an_sdk_leaves_node_path_alone() -> None:
    script = node_launch_script("nodejs20.x", "/usr/bin/node", None)
    assert "NODE_PATH" not in script.split("\n", 2)[2] and script.endswith('exec /usr/bin/node "$@"\n')


# ------------------------------------------------------------------------------ lifecycle, templates


@pytest.mark.parametrize(
    ("name", "today", "warning"),
    [
        ("python3.12", "2026-12-05", None),
        ("python3.9", "2026-12-05", "python3.9 is deprecated on AWS Lambda since 2025-12-15 and refused for new functions from 2027-02-01: move to python3.14"),
        ("python3.7", "2026-12-05", "AWS Lambda refuses new python3.7 functions since 2024-01-09: it runs here, but move to python3.14"),
        ("nodejs16.x", "2027-03-01", "AWS Lambda refuses new nodejs16.x functions since 2027-02-01: it runs here, but move to nodejs24.x"),
        ("python3.99", "2026-12-05", None),
    ],
)  # fmt: skip
def test_runtimes_aws_deprecated_or_refuses_are_one_warning(
    name: str, today: str, warning: str | None
) -> None:
    assert deprecation_warning(name, datetime.date.fromisoformat(today)) == warning


def test_a_deprecated_runtime_is_still_prepared_after_its_warning(tmp_path: Path) -> None:
    said, notify = lines()
    prepared = prepare_runtimes(
        ["python3.7"], tmp_path, notify, run=FakeInstalls(), today=datetime.date(2026, 12, 5)
    )
    assert "python3.7" in prepared
    assert said[0].startswith("AWS Lambda refuses new python3.7 functions")


def test_a_python_worker_writes_its_bytecode_whatever_the_engine_s_environment_says(tmp_path: Path) -> None:
    # GIVEN an engine environment that turns bytecode off, and a module beside a script
    runtime = prepare_runtimes([ENGINE_PYTHON], tmp_path / "rt", run=FakeInstalls())[ENGINE_PYTHON]
    assert runtime.launch is not None
    (tmp_path / "app.py").write_text("VALUE = 1\n")
    (tmp_path / "worker.py").write_text("import app\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # WHEN the script runs through the launcher
    subprocess.run([str(runtime.launch), str(tmp_path / "worker.py")], env=env, check=True)
    # THEN the module's bytecode is kept, for the next worker of the same code (engine_patches.unpacking)
    assert list((tmp_path / "__pycache__").glob("app.*.pyc"))
