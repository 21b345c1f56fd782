"""The engine image's inputs: one requirements list, pins that agree, a tag that follows the content."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from sandbox import images
from sandbox.engine_patches import PINNED_ENGINE_VERSION
from sandbox.errors import UsageError
from sandbox.settings import ENGINES, Settings

PROJECT_DIR = Path(__file__).resolve().parents[2]


def requirements_in(path: Path) -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    parsed = [Requirement(line) for line in lines if line]
    return {requirement.name.lower(): requirement for requirement in parsed}


def project_dependencies() -> dict[str, Requirement]:
    pyproject = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())
    parsed = [Requirement(text) for text in pyproject["project"]["dependencies"]]
    return {requirement.name.lower(): requirement for requirement in parsed}


def test_handler_requirements_are_pinned_and_admitted_by_the_project() -> None:
    # GIVEN the one list of what the handlers import (services/requirements.txt)
    handlers = requirements_in(PROJECT_DIR / images.HANDLER_REQUIREMENTS)
    project = project_dependencies()
    assert set(handlers) == {"aws-lambda-powertools", "pydantic"}
    for name, requirement in handlers.items():
        (pin,) = requirement.specifier
        # THEN each is an exact pin that the embedded engine's venv range also admits
        assert pin.operator == "=="
        assert project[name].specifier.contains(pin.version), (name, pin.version, project[name].specifier)


def test_the_engine_version_is_the_same_everywhere() -> None:
    engine = requirements_in(PROJECT_DIR / "docker/ministack/requirements.txt")
    assert str(engine["ministack"].specifier) == f"=={PINNED_ENGINE_VERSION}"
    assert str(project_dependencies()["ministack"].specifier) == f"=={PINNED_ENGINE_VERSION}"
    assert f"saga-sandbox-ministack:{PINNED_ENGINE_VERSION}" in (PROJECT_DIR / "compose.yaml").read_text()


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    for relative in images.MINISTACK_IMAGE_INPUTS:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_DIR / relative, tmp_path / relative)
    return tmp_path


def test_image_tag_names_the_engine_version_and_a_content_hash(
    project_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SANDBOX_MINISTACK_IMAGE", raising=False)
    tag = images.ministack_image(project_copy)
    assert (
        tag == f"saga-sandbox-ministack:{PINNED_ENGINE_VERSION}-{images.ministack_image_hash(project_copy)}"
    )
    assert tag == images.ministack_image(PROJECT_DIR)


@pytest.mark.parametrize("changed", [path.as_posix() for path in images.MINISTACK_IMAGE_INPUTS])
def test_image_tag_changes_when_any_input_changes(
    project_copy: Path, monkeypatch: pytest.MonkeyPatch, changed: str
) -> None:
    monkeypatch.delenv("SANDBOX_MINISTACK_IMAGE", raising=False)
    before = images.ministack_image(project_copy)
    with open(project_copy / changed, "a") as file:
        file.write("\n# changed\n")
    assert images.ministack_image(project_copy) != before


def test_every_module_of_the_engine_patches_is_an_input_in_order() -> None:
    # GIVEN the engine patches package, which the Dockerfile copies in whole
    package = PROJECT_DIR / images.ENGINE_PATCHES_PACKAGE
    modules = sorted(path.relative_to(PROJECT_DIR) for path in package.glob("*.py"))
    # THEN each of its modules, and nothing else from it, is hashed, in sorted order
    assert {"__init__.py", "__main__.py"} <= {module.name for module in modules}
    inputs = images.MINISTACK_IMAGE_INPUTS
    assert [path for path in inputs if path.parent == images.ENGINE_PATCHES_PACKAGE] == modules
    assert inputs[-len(modules) :] == tuple(modules)


def test_image_tag_changes_when_a_module_is_added_to_or_removed_from_the_engine_patches(
    project_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SANDBOX_MINISTACK_IMAGE", raising=False)
    before = images.ministack_image(project_copy)
    # WHEN a module is added THEN the tag changes (a compiled file beside them does not count)
    cache = project_copy / images.ENGINE_PATCHES_PACKAGE / "__pycache__"
    cache.mkdir()
    (cache / "pin.cpython-311.pyc").write_bytes(b"compiled")
    assert images.ministack_image(project_copy) == before
    added = project_copy / images.ENGINE_PATCHES_PACKAGE / "extra.py"
    added.write_text('"""Another patch."""\n')
    with_added = images.ministack_image(project_copy)
    assert with_added != before
    # AND when one is removed it changes again
    (project_copy / images.ENGINE_PATCHES_PACKAGE / "errors.py").unlink()
    assert images.ministack_image(project_copy) not in (before, with_added)


def test_image_can_be_overridden_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_MINISTACK_IMAGE", "registry.local/ministack:ci")
    assert images.ministack_image(PROJECT_DIR) == "registry.local/ministack:ci"


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_comes_from_flag_or_env(monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    monkeypatch.setenv("SANDBOX_ENGINE", engine)
    assert Settings.load().engine == engine
    assert Settings.load(engine="embedded").engine == "embedded"


def test_engine_defaults_to_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_ENGINE", raising=False)
    assert Settings.load().engine == "embedded"


def test_an_unknown_engine_is_a_usage_error_listing_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_ENGINE", "moto")
    with pytest.raises(UsageError, match="unknown engine 'moto'") as caught:
        Settings.load()
    assert caught.value.hint == "choose one of: embedded, localstack, ministack-docker"
