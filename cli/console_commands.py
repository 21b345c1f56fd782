"""`sandbox ui`: the web console, on 127.0.0.1 only."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Annotated

import typer

from cli.options import JsonFlag, project_command
from cli.output import console

if TYPE_CHECKING:
    from sandbox.settings import Settings

DEFAULT_PORT = 8566  # sandbox.console.server.DEFAULT_PORT, without importing the console to say so

PortOption = Annotated[
    int, typer.Option("--port", min=1, max=65535, help="Port of the console on 127.0.0.1.")
]
OpenFlag = Annotated[bool, typer.Option("--open", help="Open the console in your browser once it serves.")]


def serve_console(
    settings: Settings,
    port: int = DEFAULT_PORT,
    *,
    is_open: bool = False,
    json_output: bool = False,
    alongside: Callable[[], None] | None = None,
) -> None:
    """Serve the console until Ctrl-C; with ``alongside``, serve it in the background while that runs."""
    from sandbox.console.server import open_console  # Starlette and uvicorn load only here

    server = open_console(settings, port)

    def ready() -> None:
        if json_output:  # one line, at once: a script reads it while the console keeps serving
            sys.stdout.write(json.dumps({"url": server.url, "host": "127.0.0.1", "port": port}) + "\n")
            sys.stdout.flush()
        else:
            console.print(
                f"[green]✓[/green] console on {server.url} [dim](Ctrl-C stops it)[/dim]", highlight=False
            )
        if is_open:
            import webbrowser

            webbrowser.open(server.url)

    if alongside is None:
        with suppress(KeyboardInterrupt):  # Ctrl-C: the server has stopped; uvicorn passes the signal on
            server.run(on_ready=ready)
        if not json_output:
            console.print("console stopped")
        return
    server.start()
    ready()
    try:
        alongside()
    finally:
        server.stop()


def ui(
    port: PortOption = DEFAULT_PORT, open_browser: OpenFlag = False, json_output: JsonFlag = False
) -> None:
    """Serve the web console: the stack's state machines drawn, their executions and each one's path and trace; on the demo, live orders and the order form with faults."""
    from sandbox.settings import Settings

    serve_console(Settings.load(), port, is_open=open_browser, json_output=json_output)


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(epilog="Examples:  sandbox ui    sandbox ui --port 8600 --open")(project_command()(ui))
