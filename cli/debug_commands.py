"""`sandbox debug`: stop a step of a running saga in your debugger, the saga paused around it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import JsonFlag, project_command
from cli.output import console, print_json
from sandbox.errors import UsageError

CONFIGURATION_NAME = "Attach to the sandbox ({target})"


def _describe(session: dict[str, Any]) -> str:
    target = session.get("function") or f"state {session.get('state')}"
    which = "every invocation" if session.get("all") else "the next invocation"
    return f"{which} of {target} on port {session['port']}"


def debug(
    target: Annotated[
        str | None,
        typer.Argument(
            help="A function (logical id or name) or a Task state (its invocations) of the stack.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", min=1024, max=65535, help="Where the debugger listens, on 127.0.0.1.")
    ] = 5678,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="Wait for a client to attach before the handler runs (with a deadline)."
        ),
    ] = True,
    wait_seconds: Annotated[
        float,
        typer.Option(
            "--wait-seconds",
            min=0.1,
            help="How long an invocation waits for a client; then it runs undebugged.",
        ),
    ] = 120,
    every: Annotated[
        bool, typer.Option("--all", help="Debug every invocation, not only the next one, until --off.")
    ] = False,
    off: Annotated[
        bool, typer.Option("--off", help="Disarm: TARGET's session, or every session without TARGET.")
    ] = False,
    vscode: Annotated[
        bool,
        typer.Option("--vscode", help="Write (or update) the attach configuration in .vscode/launch.json."),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Arm a function or a state: its next invocation runs under a debugger listening on 127.0.0.1:PORT.

    Python handlers run under debugpy, Node.js ones under Node's inspector. While a debugger holds the invocation its Lambda timeout and the Task's TimeoutSeconds are suspended: the saga waits, then goes on as if the step had been fast. Set a breakpoint in the handler's source file and attach (VS Code: `--vscode`, then Run > "Attach to the sandbox"). Without TARGET, lists the armed sessions.
    """
    from sandbox.debugging import (
        DebugRoute,
        attach_configuration,
        path_mappings,
        published_port,
        resolve_target,
        write_launch_json,
    )
    from sandbox.settings import Settings
    from sandbox.stack import find_stack

    settings = Settings.load()
    stack = find_stack(settings)
    route = DebugRoute.of_engine(stack.engine)
    if target is None:
        sessions = route.disarm() if off else route.sessions()
        if json_output:
            print_json({"disarmed" if off else "sessions": sessions})
            return
        verb = "disarmed" if off else "armed"
        for session in sessions:
            console.print(f"{verb}: {_describe(session)}", highlight=False)
        if not sessions:
            console.print(
                "nothing is armed" + ("" if off else ": `sandbox debug TARGET` arms a function or a state")
            )
        return
    resolved = resolve_target(settings, stack, target)
    if off:
        armed = [
            s for s in route.sessions()
            if (s.get("function"), s.get("state")) == (resolved.function, resolved.state)
        ]  # fmt: skip
        if not armed:
            raise UsageError(f"{target} is not armed", hint="`sandbox debug` lists what is")
        disarmed = route.disarm(int(armed[0]["port"]))
        if json_output:
            print_json({"disarmed": disarmed})
        else:
            console.print(f"disarmed: {_describe(disarmed[0])}", highlight=False)
        return
    reachable_at = published_port(stack.engine, port)  # before arming: a port nobody can reach is refused
    session = route.arm(resolved, port=port, wait=wait, wait_seconds=wait_seconds, every=every)
    session |= {"port": reachable_at, "enginePort": port}
    configuration = attach_configuration(session, resolved, CONFIGURATION_NAME.format(target=target))
    launch = Path.cwd() / ".vscode" / "launch.json"
    if vscode:
        write_launch_json(launch, configuration)
    if json_output:
        print_json(
            {
                "session": session,
                "host": session["host"],
                "port": session["port"],
                "pathMappings": path_mappings(session, resolved),
                "configuration": configuration,
                "launchJson": str(launch) if vscode else None,
            }
        )
        return
    console.print(f"[green]✓[/green] armed {_describe(session)}", highlight=False)
    waits = f"waits up to {wait_seconds:g}s for a client, then runs undebugged" if wait else "does not wait"
    console.print(
        f"  attach to {session['host']}:{session['port']} (the invocation {waits})", highlight=False
    )
    for mapping in path_mappings(session, resolved):
        console.print(f"  path mapping: {mapping['localRoot']} -> {mapping['remoteRoot']}", highlight=False)
    if vscode:
        console.print(f"  wrote {configuration['name']!r} to {launch}", highlight=False)
    else:
        console.print("  VS Code: add --vscode to write the attach configuration to .vscode/launch.json")


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox debug PaymentFunction    sandbox debug ChargePayment --vscode    "
        "sandbox debug PaymentFunction --port 5679 --all    sandbox debug --no-wait ReserveInventory    "
        "sandbox debug    sandbox debug PaymentFunction --off    sandbox debug --off    sandbox debug X --json"
    )(project_command()(debug))
