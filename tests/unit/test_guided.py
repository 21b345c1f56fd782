"""`sandbox deploy --guided` saves its answers where the next deploy reads them."""

from __future__ import annotations

from pathlib import Path

from cli.guided import save_samconfig
from sandbox.samconfig import read_samconfig


def test_answers_land_in_the_env_and_the_rest_of_the_file_stays(tmp_path: Path) -> None:
    # GIVEN a samconfig with a comment and another environment
    path = tmp_path / "samconfig.toml"
    path.write_text('version = 0.1\n# ours\n[local.deploy.parameters]\nparameter_overrides = "Stage=dev"\n')
    # WHEN the guided answers for default are saved
    save_samconfig(path, "default", {"stack_name": "trips", "region": "eu-west-1",
                                     "parameter_overrides": 'Stage=prod Note="a b"', "confirm_changeset": True})  # fmt: skip
    # THEN the default env reads them back, the local env and the comment are untouched
    config = read_samconfig(path, "default")
    assert (config.text("stack_name"), config.parameter_overrides) == (
        "trips",
        {"Stage": "prod", "Note": "a b"},
    )
    assert config.values["confirm_changeset"] is True
    assert read_samconfig(path, "local").parameter_overrides == {"Stage": "dev"}
    assert "# ours" in path.read_text()


def test_a_new_file_gets_a_version(tmp_path: Path) -> None:
    path = tmp_path / "samconfig.toml"
    save_samconfig(path, "default", {"stack_name": "x"})
    assert path.read_text().startswith("version = 0.1")
    assert read_samconfig(path, None, is_local=False).text("stack_name") == "x"
