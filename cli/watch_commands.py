"""`sandbox watch` (and `sandbox up --watch`): push each saved handler or ASL edit to the engine."""

from __future__ import annotations

from typer import Typer

from cli.options import project_command
from cli.output import console, error_console
from sandbox.reload import Update, watch_and_reload
from sandbox.settings import Settings
from sandbox.stack import find_stack


def _print_update(update: Update) -> None:
    live = f", live {update.saved_to_live_ms} ms after save" if update.saved_to_live_ms is not None else ""
    console.print(f"[green]↻[/green] {update.logical_id} updated from {update.source} "
                  f"in {update.duration_ms} ms{live}", highlight=False, soft_wrap=True)  # fmt: skip


def _print_error(error: Exception) -> None:
    error_console.print(f"[red]reload failed:[/red] {error}", highlight=False, soft_wrap=True)


def run_watch() -> None:
    """Watch until Ctrl-C."""
    settings = Settings.load()
    stack = find_stack(settings)
    console.print(f"watching {settings.project_dir / 'services'} and {settings.project_dir / 'state_machines'} "
                  "— save a file to update the engine; Ctrl-C to stop", soft_wrap=True)  # fmt: skip
    watch_and_reload(settings, stack, _print_update, _print_error)
    console.print("stopped watching")


def watch() -> None:
    """Watch services/ and state_machines/ and push each change to the running engine."""
    run_watch()


def register(app: Typer) -> None:
    """Add this command to the CLI."""
    app.command(epilog="Example:  sandbox watch    (or: sandbox up --watch)")(project_command()(watch))
