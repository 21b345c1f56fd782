"""`sandbox watch` (and `sandbox up --watch`): push each saved handler or ASL edit to the engine."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from typer import Typer

from cli.options import project_command
from cli.output import console, error_console

# The file watcher and the build load when a watch starts, not with the CLI.
if TYPE_CHECKING:
    from sandbox.reload import Update


def _print_update(update: Update) -> None:
    live = f", live {update.saved_to_live_ms} ms after save" if update.saved_to_live_ms is not None else ""
    console.print(f"[green]↻[/green] {update.logical_id} updated from {update.source} "
                  f"in {update.duration_ms} ms{live}", highlight=False, soft_wrap=True)  # fmt: skip


def _print_error(error: Exception) -> None:
    error_console.print(f"[red]reload failed:[/red] {error}", highlight=False, soft_wrap=True)


def run_watch() -> None:
    """Watch until Ctrl-C."""
    from sandbox.packaging import load_template
    from sandbox.reload import watch_and_reload
    from sandbox.settings import Settings
    from sandbox.stack import find_stack
    from sandbox.targets import local_build_options

    settings = Settings.load()
    stack = find_stack(settings)
    # Rebuilt as `up` built them: for the interpreter and machine that run each function.
    options = local_build_options(settings, stack.engine.engine, load_template(settings.template_path), _note)

    def say_ready(roots: list[Path]) -> None:
        if not roots:
            console.print("the template names no local CodeUri or DefinitionUri: nothing to watch")
            return
        folders = ", ".join(_shown(root) for root in roots)
        console.print(
            f"watching {folders} — save a file to update the engine; Ctrl-C to stop", soft_wrap=True
        )

    watch_and_reload(settings, stack, _print_update, _print_error, python_version_for=options.python_version_for,
                     architecture=options.architecture, on_ready=say_ready)  # fmt: skip
    console.print("stopped watching")


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _note(line: str) -> None:
    error_console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)


def watch() -> None:
    """Watch every CodeUri folder and DefinitionUri file the template names; push each save to the engine."""
    run_watch()


def register(app: Typer) -> None:
    """Add this command to the CLI."""
    app.command(epilog="Example:  sandbox watch    (or: sandbox up --watch)")(project_command()(watch))
