"""Lambda workers forked from a pre-imported parent: what the engine sees is a worker process as before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.engine_patches.zygotes import (
    ForkedWorker,
    WorkerParent,
    WorkerParentError,
    WorkerParents,
    dependency_set,
    forking_subprocess,
    is_python_worker,
)
from sandbox.waiting import wait_until

# A stand-in for the engine's worker script: answers its init line with what it sees, then
# echoes each line until its stdin closes.
WORKER_SCRIPT = """
import json, os, sys
init = json.loads(sys.stdin.readline())
seen_before_init = sorted(name for name in sys.modules if name.startswith("fakedep"))
for module in init.get("imports", []):
    __import__(module)
print("a log line", file=sys.stderr, flush=True)
sys.stdout.write(json.dumps({
    "status": "ready", "cwd": os.getcwd(), "argv": sys.argv, "path": sys.path,
    "env": {name: os.environ.get(name) for name in init.get("env", [])},
    "preloaded": seen_before_init, "boto3": "boto3" in sys.modules,
}) + "\\n")
sys.stdout.flush()
for line in sys.stdin:
    if line.strip() == "exit 3":
        sys.exit(3)
    sys.stdout.write(line)
    sys.stdout.flush()
"""


@pytest.fixture
def worker_script(tmp_path: Path) -> Path:
    script = tmp_path / "worker" / "_worker.py"
    script.parent.mkdir()
    script.write_text(WORKER_SCRIPT)
    return script


@pytest.fixture
def parent() -> Iterator[WorkerParent]:
    started = WorkerParent(sys.executable)
    yield started
    started.stop()


def init(worker: ForkedWorker, **request: object) -> dict[str, object]:
    worker.stdin.write(json.dumps(request) + "\n")
    answer: dict[str, object] = json.loads(worker.stdout.readline())
    return answer


def test_a_forked_worker_runs_the_script_in_its_folder_with_its_environment_and_pipes(
    parent: WorkerParent, worker_script: Path, tmp_path: Path
) -> None:
    # GIVEN a worker asked for as the engine starts one: its script, folder and environment
    env = {**os.environ, "FUNCTION_SETTING": "from the function"}
    worker = parent.fork([sys.executable, str(worker_script)], str(tmp_path), env)
    # WHEN it answers its init
    answer = init(worker, env=["FUNCTION_SETTING"])
    # THEN it ran the script in that folder with that environment, the runtime's modules preloaded
    assert answer["status"] == "ready"
    assert answer["cwd"] == str(tmp_path)
    assert answer["argv"] == [str(worker_script)]
    assert answer["env"] == {"FUNCTION_SETTING": "from the function"}
    assert answer["boto3"] is True
    # AND its script's folder is first on sys.path; the engine patches' folder is not on it
    path = answer["path"]
    assert isinstance(path, list) and path[0] == str(worker_script.parent)
    assert not any(str(entry).rstrip("/").endswith("engine_patches") for entry in path)
    # AND its stderr is the engine's to read, and lines go both ways until it exits
    assert worker.stderr.readline() == "a log line\n"
    worker.stdin.write("ping\n")
    assert worker.stdout.readline() == "ping\n"
    assert worker.poll() is None
    worker.stdin.write("exit 3\n")
    assert worker.wait(timeout=10) == 3
    assert worker.poll() == 3


def test_a_killed_worker_reports_its_signal_as_subprocess_does(
    parent: WorkerParent, worker_script: Path
) -> None:
    # GIVEN a running worker
    worker = parent.fork([sys.executable, str(worker_script)], str(worker_script.parent), dict(os.environ))
    init(worker)
    # WHEN the engine waits briefly, then terminates it
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=0.05)
    worker.terminate()
    # THEN its exit is the negative signal, and signalling it again harms nothing
    assert worker.wait(timeout=10) == -signal.SIGTERM
    worker.kill()


def test_a_launcher_s_interpreter_settings_reach_the_worker_not_the_engine_s(
    tmp_path: Path, worker_script: Path
) -> None:
    # GIVEN a runtime launcher that sets PYTHONPATH, as a runtime's launcher does for its SDK
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    launcher = tmp_path / "launch"
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH={sdk}\nexport PYTHONPATH\nexec {sys.executable} "$@"\n')
    launcher.chmod(0o755)
    parent = WorkerParent(str(launcher))
    try:
        # WHEN the engine asks for a worker with its own PYTHONPATH in the environment
        env = {**os.environ, "PYTHONPATH": "/the/engine/s/path"}
        worker = parent.fork([str(launcher), str(worker_script)], str(tmp_path), env)
        answer = init(worker, env=["PYTHONPATH"])
        # THEN the worker sees the launcher's, as a worker the launcher started would
        assert answer["env"] == {"PYTHONPATH": str(sdk)}
        worker.kill()
        worker.wait(timeout=10)
    finally:
        parent.stop()


def make_package(folder: Path) -> Path:
    """A function's package as `sam build` makes it: its code beside an installed distribution."""
    folder.mkdir()
    (folder / "fakedep").mkdir()
    (folder / "fakedep" / "__init__.py").write_text("")
    (folder / "fakedep" / "models.py").write_text("VALUE = 1\n")
    (folder / "fakedep-1.0.dist-info").mkdir()
    (folder / "fakedep-1.0.dist-info" / "top_level.txt").write_text("fakedep\n")
    (folder / "handler.py").write_text("import fakedep.models\n")
    return folder


def test_what_a_worker_imported_of_its_dependencies_is_preloaded_for_the_next_but_not_its_own_code(
    tmp_path: Path, worker_script: Path
) -> None:
    # GIVEN a parent for a package holding a dependency, and a first worker whose init imports
    # the dependency (through its handler)
    package = make_package(tmp_path / "code")
    parents = WorkerParents()
    try:
        args = [sys.executable, str(worker_script)]
        first = parents.fork(args, str(package), dict(os.environ))
        assert first is not None
        assert init(first, imports=["handler"])["preloaded"] == []
        first.stdin.write("first invocation\n")  # the worker asks for it: its init is over
        assert first.stdout.readline() == "first invocation\n"

        # WHEN the next worker of that package starts
        def next_preloaded() -> list[str]:
            worker = parents.fork(args, str(package), dict(os.environ))
            assert worker is not None
            preloaded = init(worker)["preloaded"]
            worker.kill()
            worker.wait(timeout=10)
            assert isinstance(preloaded, list)
            return preloaded

        # THEN the dependency's modules are already imported, and the handler (project code) is not
        preloaded = wait_until(next_preloaded, timeout=10, what="the parent to preload the dependency")
        assert preloaded == ["fakedep", "fakedep.models"]
        first.kill()
    finally:
        parents.stop()


def test_functions_with_the_same_distributions_share_a_parent_and_layers_or_none_get_the_runtime_s(
    tmp_path: Path,
) -> None:
    package = make_package(tmp_path / "one")
    assert dependency_set(str(package), {}) == (str(package), "fakedep-1.0.dist-info")
    assert dependency_set(str(package), {"_LAMBDA_LAYERS_DIRS": "/layer"}) is None
    assert dependency_set(str(tmp_path), {}) is None


def test_a_parent_that_cannot_start_leaves_workers_to_start_as_processes(tmp_path: Path) -> None:
    # GIVEN a binary that is no Python interpreter
    broken = tmp_path / "not-python"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    parents = WorkerParents()
    # WHEN a worker is asked of it THEN there is none (the engine starts the process itself)
    assert parents.fork([str(broken), str(tmp_path / "_worker.py")], str(tmp_path), {}) is None
    with pytest.raises(WorkerParentError):
        WorkerParent(str(broken))


def test_a_parent_that_died_is_started_again(worker_script: Path) -> None:
    parents = WorkerParents()
    try:
        args = [sys.executable, str(worker_script)]
        first = parents.fork(args, str(worker_script.parent), dict(os.environ))
        assert first is not None
        init(first)
        # GIVEN the parent was killed (its worker goes on)
        (parent,) = parents._parents.values()
        parent.process.kill()
        parent.process.wait()
        # WHEN another worker is asked for THEN a new parent forks it
        second = parents.fork(args, str(worker_script.parent), dict(os.environ))
        assert second is not None and init(second)["status"] == "ready"
        for worker in (first, second):
            worker.kill()
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        parents.stop()


def test_only_the_engine_s_python_worker_popen_is_forked(tmp_path: Path) -> None:
    piped = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    assert is_python_worker(["/usr/bin/python3", "/tmp/x/_worker.py"], piped)
    assert not is_python_worker(["node", "/tmp/x/_worker.js"], piped)
    assert not is_python_worker(["/usr/bin/python3", "/tmp/x/_worker.py"], {**piped, "text": False})
    assert not is_python_worker(["/usr/bin/python3", "-c", "pass"], piped)
    # AND any other Popen through the stand-in module is the real one
    shim = forking_subprocess(WorkerParents())
    process = shim.Popen(["true"])
    assert isinstance(process, subprocess.Popen) and process.wait(timeout=10) == 0
    assert shim.PIPE == subprocess.PIPE
