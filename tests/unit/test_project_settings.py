"""Which project a command acts on: the template, its state folder, its stack name and samconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import UsageError
from sandbox.settings import DEMO_TEMPLATE, Settings, flags_of_command, stack_name_of


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SANDBOX_STATE_DIR", "SANDBOX_STACK_NAME", "SANDBOX_TEMPLATE_FILE", "SANDBOX_PROJECT_DIR",
                 "SANDBOX_CONFIG_ENV", "SANDBOX_CONFIG_FILE", "SANDBOX_REGION"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "trip_booking"
    folder.mkdir()
    (folder / "template.yml").write_text("Resources: {}\n")
    return folder


def test_the_current_folders_template_is_the_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a folder holding template.yml and no samconfig
    monkeypatch.chdir(project)
    # WHEN settings are loaded there
    settings = Settings.load()
    # THEN the project is that folder: its template, its state beside it, a stack named after it
    assert settings.template_path == project / "template.yml"
    assert settings.state_dir == project / ".sandbox"
    assert settings.stack_name == "trip-booking"
    assert not settings.is_demo


def test_without_a_template_here_the_demo_is_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SANDBOX_STACK_NAME", raising=False)
    settings = Settings.load()
    assert settings.template_path == DEMO_TEMPLATE
    assert (settings.is_demo, settings.stack_name) == (True, "saga-sandbox")


def test_samconfig_names_the_stack_and_region_and_flags_win(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "samconfig.toml").write_text(
        'version = 0.1\n[default.deploy.parameters]\nstack_name = "trips"\nregion = "eu-west-1"\n'
    )
    monkeypatch.chdir(project)
    assert (Settings.load().stack_name, Settings.load().region) == ("trips", "eu-west-1")
    # WHEN the command's flags name another stack
    with flags_of_command(stack_name="mine", template_file=None):
        assert Settings.load().stack_name == "mine"


def test_a_template_of_any_name_is_taken_from_the_flag(project: Path, tmp_path: Path) -> None:
    other = project / "saga.yaml"
    other.write_text("Resources: {}\n")
    settings = Settings.load(template_file=other)
    assert (settings.template_path, settings.project_dir) == (other, project)
    with pytest.raises(UsageError, match="template not found"):
        Settings.load(template_file=tmp_path / "missing.yaml")


def test_folder_names_become_valid_stack_names() -> None:
    assert stack_name_of(Path("/x/my_project.v2")) == "my-project-v2"
    assert stack_name_of(Path("/x/2024")) == "sandbox-2024"


def test_an_unnamed_config_env_is_local_for_the_engine_and_default_for_aws(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "samconfig.toml").write_text(
        'version = 0.1\n[default.deploy.parameters]\nstack_name = "trips"\n'
        '[local.deploy.parameters]\nstack_name = "trips-local"\n'
    )
    monkeypatch.chdir(project)
    settings = Settings.load()
    assert settings.stack_name == "trips-local"
    assert settings.samconfig(is_local=False).text("stack_name") == "trips"
    assert Settings.load(config_env="default").stack_name == "trips"
