"""The project options every stack command takes, and the argument forms SAM users type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from cli.app import normalize_args
from cli.options import project_command
from sandbox.settings import Settings


def test_debug_anywhere_and_sam_style_pair_lists_are_normalized() -> None:
    args, is_debug = normalize_args(
        ["up", "--debug", "--parameter-overrides", "A=1", "B=x y", "--tags", "t=1"]
    )
    assert is_debug
    assert args == ["up", "--parameter-overrides", "A=1", "--parameter-overrides", "B=x y", "--tags", "t=1"]
    assert normalize_args(["execute", "--", "--debug"]) == (["execute", "--", "--debug"], False)


def test_a_project_command_sees_its_flags_through_settings(tmp_path: Path) -> None:
    # GIVEN a command decorated with the project options and a template of another name
    template = tmp_path / "saga.yaml"
    template.write_text("Parameters: {Stage: {Type: String}}\nResources: {}\n")
    seen: dict[str, Any] = {}
    app = typer.Typer()

    @app.command()
    @project_command(deploys=True)
    def show(verbose: bool = False) -> None:
        settings = Settings.load()
        seen.update(template=settings.template_path, stack=settings.stack_name,
                    overrides=settings.parameter_overrides, verbose=verbose)  # fmt: skip

    # WHEN it runs with -t, --stack-name and two overrides
    result = CliRunner().invoke(
        app,
        [
            "--verbose",
            "-t",
            str(template),
            "--stack-name",
            "s1",
            "--parameter-overrides",
            "Stage=dev",
            "--parameter-overrides",
            'Note="a b"',
        ],
    )
    # THEN its own option and the project's all arrive, and nothing leaks past the command
    assert result.exit_code == 0, result.output
    assert seen == {
        "template": template,
        "stack": "s1",
        "overrides": {"Stage": "dev", "Note": "a b"},
        "verbose": True,
    }
    assert Settings.load().stack_name != "s1"
