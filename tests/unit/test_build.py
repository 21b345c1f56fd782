"""The builder: zips laid out as `sam build` lays them out, installs cached by what they depend on."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sandbox import build as builder
from sandbox.build import Build, build_zip, install_python_requirements
from sandbox.errors import DeployError
from tests.files import names_in, write


class FakeRunner:
    """Stands in for pip (writes ``files`` into --target) and npm (writes node_modules into cwd)."""

    def __init__(self, files: dict[str, str] | None = None, *, fail: int = 0):
        self.calls: list[list[str]] = []
        self.files = files or {"pydantic/__init__.py": "", "bin/script": "", "x-1.dist-info/METADATA": ""}
        self.fail = fail  # how many calls fail before one succeeds

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        if len(self.calls) <= self.fail:
            return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for x")
        if command[0] == "npm":
            # npm install also writes a lockfile: the package's own manifests come from its source.
            write(Path(kwargs["cwd"]), {"node_modules/leftpad/index.js": "module.exports = 1;\n",
                                        "package-lock.json": "{}"})  # fmt: skip
        else:
            write(Path(command[command.index("--target") + 1]), self.files)
        return subprocess.CompletedProcess(command, 0, "", "")


def refuse(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    raise AssertionError(f"nothing should be installed, ran {command}")


@pytest.fixture
def payments(tmp_path: Path) -> Path:
    """A standard SAM function folder (CodeUri: payments/), with litter tools leave beside code."""
    return write(tmp_path / "payments", {
        "charge.py": "def lambda_handler(event, context):\n    return 1\n",
        "lib/money.py": "X = 1\n",
        "__pycache__/charge.cpython-311.pyc": "compiled",
        "lib/stale.pyc": "compiled",
        ".venv/lib/site.py": "a virtualenv",
        ".pytest_cache/v": "cache",
    })  # fmt: skip


def test_a_function_zip_holds_its_folders_contents_at_the_root(payments: Path, tmp_path: Path) -> None:
    # GIVEN CodeUri: payments/ and Handler: charge.lambda_handler, WHEN built
    names = names_in(build_zip(Build(payments, "python3.12"), tmp_path / "cache", run=refuse))
    # THEN charge.py is at the root (as sam build puts it), without the folder's litter
    assert sorted(names) == ["charge.py", "lib/money.py"]


def test_requirements_are_installed_at_the_root_once_and_then_cached(payments: Path, tmp_path: Path) -> None:
    # GIVEN a function folder with a requirements.txt
    (payments / "requirements.txt").write_text("pydantic==2.13.5\n")
    pip = FakeRunner()
    # WHEN it is built twice
    first = build_zip(Build(payments, "python3.12"), tmp_path / "cache", run=pip)
    second = build_zip(Build(payments, "python3.12"), tmp_path / "cache", run=pip)
    # THEN pip ran once, and the packages sit beside charge.py (pip's scripts left out)
    assert len(pip.calls) == 1
    assert first == second
    names = names_in(first)
    assert {"charge.py", "requirements.txt", "pydantic/__init__.py", "x-1.dist-info/METADATA"} <= set(names)
    assert not [name for name in names if name.startswith(("bin/", ".complete"))]
    # AND the install was for the Lambda platform and the runtime's Python, not this machine's
    flags = " ".join(pip.calls[0])
    assert "--platform manylinux2014_x86_64" in flags and "--python-version 3.12" in flags
    assert "--only-binary=:all:" in flags and "--implementation cp" in flags
    assert f"-r {payments / 'requirements.txt'}" in flags


def test_the_cache_is_keyed_by_requirements_python_and_platform(payments: Path, tmp_path: Path) -> None:
    requirements = write(payments, {"requirements.txt": "pydantic==2.13.5\n"}) / "requirements.txt"
    pip = FakeRunner()
    cache = tmp_path / "cache"
    first = install_python_requirements(requirements, "3.12", "x86_64", cache, run=pip)
    assert install_python_requirements(requirements, "3.12", "x86_64", cache, run=pip) == first
    assert len(pip.calls) == 1
    arm = install_python_requirements(requirements, "3.12", "arm64", cache, run=pip)
    assert "--platform manylinux2014_aarch64" in " ".join(pip.calls[-1])
    other_python = install_python_requirements(requirements, "3.11", "x86_64", cache, run=pip)
    requirements.write_text("pydantic==2.13.4\n")
    changed = install_python_requirements(requirements, "3.12", "x86_64", cache, run=pip)
    assert len({first, arm, other_python, changed}) == 4
    assert len(pip.calls) == 4


def test_the_python_version_to_build_for_can_differ_from_the_runtimes(payments: Path, tmp_path: Path) -> None:
    # Locally a python3.12 function may run on the engine's 3.11: its native wheels must import there.
    (payments / "requirements.txt").write_text("pydantic\n")
    pip = FakeRunner()
    build_zip(Build(payments, "python3.12", "arm64"), tmp_path / "cache", python_version="3.11", run=pip)
    flags = " ".join(pip.calls[0])
    assert "--python-version 3.11" in flags and "manylinux2014_aarch64" in flags


def test_a_failed_pip_is_one_deploy_error_and_leaves_nothing_behind(payments: Path, tmp_path: Path) -> None:
    (payments / "requirements.txt").write_text("nope\n")
    pip = FakeRunner(fail=2)
    with pytest.raises(DeployError, match=r"could not install .*requirements\.txt for Python 3\.9") as caught:
        build_zip(Build(payments, "python3.9"), tmp_path / "cache", run=pip)
    assert "No matching distribution" in str(caught.value.details)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_a_source_only_package_is_installed_natively_for_this_interpreter(
    payments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no wheel for the Lambda platform, and a build for this very interpreter and machine
    monkeypatch.setattr(builder, "machine_architecture", lambda: "x86_64")
    monkeypatch.setattr(sys, "platform", "linux")
    (payments / "requirements.txt").write_text("sdist-only\n")
    pip = FakeRunner(fail=1)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    install_python_requirements(payments / "requirements.txt", version, "x86_64", tmp_path / "c", run=pip)
    # THEN pip ran again without the platform flags (it builds the sdist for this interpreter)
    assert len(pip.calls) == 2
    assert "--platform" in pip.calls[0] and "--platform" not in pip.calls[1]


def test_zips_are_byte_for_byte_deterministic(payments: Path, tmp_path: Path) -> None:
    first = build_zip(Build(payments, "python3.12"), tmp_path / "c", run=refuse)
    (payments / "charge.py").touch()
    assert build_zip(Build(payments, "python3.12"), tmp_path / "c", run=refuse) == first
    (payments / "charge.py").write_text("changed = True\n")
    assert build_zip(Build(payments, "python3.12"), tmp_path / "c", run=refuse) != first


def test_a_zip_keeps_which_files_are_executable(tmp_path: Path) -> None:
    source = write(tmp_path / "fn", {"bootstrap": "#!/bin/sh\n", "data.txt": "x"})
    (source / "bootstrap").chmod(0o755)
    with zipfile.ZipFile(io.BytesIO(build_zip(Build(source), tmp_path / "c"))) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes == {"bootstrap": 0o755, "data.txt": 0o644}


def test_a_changed_function_with_dependencies_makes_a_new_zip_without_reinstalling(
    payments: Path, tmp_path: Path
) -> None:
    (payments / "requirements.txt").write_text("pydantic\n")
    pip = FakeRunner()
    first = build_zip(Build(payments, "python3.12"), tmp_path / "c", run=pip)
    (payments / "charge.py").write_text("X = 2\n")
    second = build_zip(Build(payments, "python3.12"), tmp_path / "c", run=pip)
    assert first != second and len(pip.calls) == 1
    assert len(list((tmp_path / "c" / "zips").iterdir())) == 2


def test_the_source_wins_over_an_installed_file_of_the_same_name(payments: Path, tmp_path: Path) -> None:
    (payments / "requirements.txt").write_text("x\n")
    pip = FakeRunner({"charge.py": "from a package\n"})
    content = build_zip(Build(payments, "python3.12"), tmp_path / "c", run=pip)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.namelist().count("charge.py") == 1
        assert archive.read("charge.py").startswith(b"def lambda_handler")


# ---------------------------------------------------------------- Node.js


@pytest.fixture
def reserve(tmp_path: Path) -> Path:
    return write(tmp_path / "reserve", {
        "app.js": "exports.handler = async () => 1;\n",
        "package.json": '{"dependencies": {"leftpad": "1.0.0"}}',
        "node_modules/stale/index.js": "left from a local npm install",
    })  # fmt: skip


def test_node_dependencies_are_installed_into_the_package_roots_node_modules(
    reserve: Path, tmp_path: Path
) -> None:
    npm = FakeRunner()
    content = build_zip(Build(reserve, "nodejs20.x"), tmp_path / "c", run=npm)
    assert sorted(names_in(content)) == ["app.js", "node_modules/leftpad/index.js", "package.json"]
    assert npm.calls == [["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]]
    # AND a second build installs nothing
    assert build_zip(Build(reserve, "nodejs20.x"), tmp_path / "c", run=npm) == content
    assert len(npm.calls) == 1


def test_node_with_a_lockfile_installs_exactly_it(reserve: Path, tmp_path: Path) -> None:
    (reserve / "package-lock.json").write_text("{}")
    npm = FakeRunner()
    build_zip(Build(reserve, "nodejs22.x"), tmp_path / "c", run=npm)
    assert npm.calls[0][:2] == ["npm", "ci"] and "--omit=dev" in npm.calls[0]


def test_a_function_without_a_manifest_builds_with_no_install(tmp_path: Path) -> None:
    source = write(tmp_path / "fn", {"app.js": "x", "node_modules/own/index.js": "vendored"})
    names = names_in(build_zip(Build(source, "nodejs20.x"), tmp_path / "c", run=refuse))
    assert sorted(names) == ["app.js", "node_modules/own/index.js"]


# ---------------------------------------------------------------- layers


def test_a_python_layer_built_by_runtime_goes_under_python(tmp_path: Path) -> None:
    source = write(tmp_path / "layer", {"helpers.py": "X = 1\n", "requirements.txt": "pydantic\n"})
    pip = FakeRunner()
    names = names_in(build_zip(Build(source, "python3.12", prefix="python/"), tmp_path / "c", run=pip))
    assert {"python/helpers.py", "python/pydantic/__init__.py"} <= set(names)
    assert not [name for name in names if not name.startswith("python/")]


def test_a_node_layer_built_by_runtime_goes_under_nodejs(tmp_path: Path) -> None:
    source = write(tmp_path / "layer", {"package.json": "{}"})
    names = names_in(
        build_zip(Build(source, "nodejs20.x", prefix="nodejs/"), tmp_path / "c", run=FakeRunner())
    )
    assert sorted(names) == ["nodejs/node_modules/leftpad/index.js", "nodejs/package.json"]


def test_content_without_a_runtime_is_zipped_as_it_is(tmp_path: Path) -> None:
    source = write(tmp_path / "layer", {"python/helpers.py": "X = 1\n", "python/requirements.txt": "x\n"})
    names = names_in(build_zip(Build(source), tmp_path / "c", run=refuse))
    assert sorted(names) == ["python/helpers.py", "python/requirements.txt"]


def test_a_missing_code_folder_is_a_deploy_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="code folder not found"):
        build_zip(Build(tmp_path / "nope", "python3.12"), tmp_path / "c")


# ---------------------------------------------------------------- what a save rebuilds (sandbox watch)


def test_a_save_rebuilds_the_functions_whose_code_uri_holds_it(tmp_path: Path) -> None:
    from sandbox.reload import ReloadPlan

    write(tmp_path, {"payments/charge.py": "", "payments/requirements.txt": "", "shipping/ship.py": "",
                     "sm/saga.asl.json": "{}"})  # fmt: skip
    resources = {
        "Charge": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "payments/"}},
        "Refund": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "payments"}},
        "Ship": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "shipping/"}},
        "Inline": {"Type": "AWS::Serverless::Function", "Properties": {"InlineCode": "x"}},
        "Saga": {
            "Type": "AWS::Serverless::StateMachine",
            "Properties": {"DefinitionUri": "sm/saga.asl.json"},
        },
    }
    template = {"Globals": {"Function": {"Runtime": "python3.12"}}, "Resources": resources}
    plan = ReloadPlan.from_template(template, tmp_path)
    # A requirements change rebuilds (and so reinstalls) every function built from that folder.
    assert plan.affected([tmp_path / "payments" / "requirements.txt"]) == ({"Charge", "Refund"}, set())
    assert plan.affected([tmp_path / "shipping" / "ship.py", tmp_path / "sm" / "saga.asl.json"]) == (
        {"Ship"}, {"Saga"},
    )  # fmt: skip
    assert plan.affected([tmp_path / "payments" / "__pycache__" / "charge.cpython-311.pyc"]) == (set(), set())
    assert plan.affected([tmp_path / "template.yaml"]) == (set(), set())
    root = tmp_path.resolve()
    assert plan.watched_paths() == [root / "payments", root / "shipping", root / "sm"]


def test_a_code_uri_of_the_whole_folder_is_watched_alone(tmp_path: Path) -> None:
    from sandbox.reload import ReloadPlan

    write(tmp_path, {"app.py": "", "sm/saga.asl.json": "{}"})
    template = {"Resources": {
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": "python3.12"}},
        "Saga": {"Type": "AWS::Serverless::StateMachine", "Properties": {"DefinitionUri": "sm/saga.asl.json"}},
    }}  # fmt: skip
    plan = ReloadPlan.from_template(template, tmp_path)
    assert plan.watched_paths() == [tmp_path.resolve()]
    assert plan.affected([tmp_path / ".sandbox" / "state.json"]) == (set(), set())
    assert plan.affected([tmp_path / "sm" / "saga.asl.json"]) == ({"Fn"}, {"Saga"})
