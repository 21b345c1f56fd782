"""`sandbox up`, `down` and `status`: the local engine and its stack."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cli.options import JsonFlag, complete_engine, project_command
from cli.output import console, error_console, print_json, print_key_values, styled
from sandbox.errors import EngineNotRunningError, StackNotFoundError, UsageError
from sandbox.settings import ENGINES, Settings, format_time_scale, time_scale_of

# The engine, stack and target modules load in the command that runs: `sandbox --help` and the
# other commands never pay for them.
if TYPE_CHECKING:
    from sandbox.engine import EngineState
    from sandbox.engine.clock import EngineClock
    from sandbox.stack import LocalStack

T = TypeVar("T")


def _with_progress(message: str, is_quiet: bool, work: Callable[[Callable[[str], None]], T]) -> T:
    """Run ``work`` under a spinner on stderr whose text ``work`` may update.

    Only on a terminal, and never in --json mode: in a log or a pipe, "starting…" lines would
    read as results.
    """
    if is_quiet or not error_console.is_terminal:
        return work(lambda text: None)
    with error_console.status(message) as status:
        return work(lambda text: status.update(f"{text}…"))


def _note(line: str) -> None:
    """One line about the state folder, on stderr: stdout stays the command's own output (JSON too)."""
    error_console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)


def _start_prewarm(stack: LocalStack, settings: Settings) -> list[str] | None:
    """Ask the engine to warm the stack's functions; the names it warms, None when it cannot."""
    from sandbox.logs import stack_functions
    from sandbox.prewarm import request_prewarm

    if stack.engine.engine == "localstack":  # only the sandbox's own engines have the route
        return None
    functions = stack_functions(
        stack.client("cloudformation", settings.region),
        stack.client("lambda", settings.region),
        settings.stack_name,
    )
    return request_prewarm(stack.engine.endpoint_url, [f.name for f in functions]) if functions else None


def _sync_clock(stack: LocalStack, settings: Settings) -> EngineClock | None:
    """The engine's saga clock, set to the chosen scale first when it runs at another (an engine
    already up keeps running; its clock changes from its next wait on). None for LocalStack."""
    from sandbox.engine.clock import read_engine_clock, set_engine_clock

    if stack.engine.engine == "localstack":
        return None  # it has no saga clock: a chosen scale is refused before it starts
    clock = read_engine_clock(stack.engine.endpoint_url)
    if clock is not None and settings.time_scale is not None and clock.time_scale != settings.time_scale:
        clock = set_engine_clock(stack.engine.endpoint_url, settings.time_scale)
    return clock


def _template_name(settings: Settings) -> str:
    """The template, as the user would name it from here; the demo's says so."""
    path = settings.template_path
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return f"{path} (the bundled order demo)" if settings.is_demo else str(path)


def _local_outputs(stack: LocalStack) -> dict[str, str]:
    """The stack's outputs with ``ApiUrl`` the URL that answers on the local engine.

    The stack's own ``ApiUrl`` output names the AWS host the API would have there, which does not
    resolve locally; a script reading ``.stack.outputs.ApiUrl`` gets the one that works (as
    ``.stack.apiUrl``).
    """
    from sandbox.targets import local_outputs

    outputs = local_outputs(stack.outputs, stack.engine.endpoint_url)
    return {**outputs, "ApiUrl": stack.api_url} if stack.has_api else outputs


def _engine_summary(state: EngineState) -> dict[str, Any]:
    return {
        "name": state.engine,
        "pid": state.pid,
        "container": state.container_id,
        "containerName": state.container_name,
        "image": state.image,
        "composeProject": state.compose_project,
        "port": state.port,
        "endpoint": state.endpoint_url,
    }


def up(
    port: Annotated[
        int | None, typer.Option(help="Engine port (env SANDBOX_PORT).", show_default="4566")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help=f"Which engine: {', '.join(ENGINES)}. embedded needs no Docker; localstack and "
            "ministack-docker start through compose.yaml (env SANDBOX_ENGINE).",
            show_default="embedded",
            autocompletion=complete_engine,
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Then push each saved edit to the engine (hot reload).")
    ] = False,
    ui: Annotated[
        bool,
        typer.Option(
            "--ui", help="Then serve the web console on 127.0.0.1 (as `sandbox ui`; with --watch, beside it)."
        ),
    ] = False,
    before_deploy: Annotated[
        str | None,
        typer.Option(
            "--before-deploy",
            metavar="CMD",
            help="A shell command run once the engine answers, before the deploy, with AWS_ENDPOINT_URL, "
            "AWS_REGION and dummy credentials set: create what the template expects from outside "
            "(SSM parameters, another stack's table).",
        ),
    ] = None,
    prewarm: Annotated[
        bool,
        typer.Option(
            "--prewarm/--no-prewarm",
            help="Start one worker of each function in the background once deployed, so the first "
            "invocation is warm (--no-prewarm: each function's first invocation is a cold start, as on AWS).",
        ),
    ] = True,
    time_scale: Annotated[
        str | None,
        typer.Option(
            "--time-scale",
            metavar="N|max",
            help="Run the saga's clock N times faster (Wait states, retries, Task and Lambda timeouts, "
            "the handler's remaining time, stream retries; budgets keep a 0.5 s floor), or `max`: waits "
            "skipped. On a running engine it changes the clock at once (env SANDBOX_TIME_SCALE).",
            show_default="the default clock: Wait states and retries 100x, timeouts real",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Start the local engine and deploy the project's SAM template (a no-op when both are already up).

    The project is the template given with -t, else template.yaml in this folder, else the bundled
    order demo. Its functions are built as `sam build` builds them; parameters come from
    --parameter-overrides over samconfig.toml over the template's defaults.
    """
    from sandbox.engine import adopt_running_engine, engine_of, locked_state_dir
    from sandbox.stack import bring_up, run_before_deploy

    settings = Settings.load(
        port=port, engine=engine, time_scale=time_scale_of(time_scale, "--time-scale") if time_scale else None
    )
    if settings.time_scale is not None and settings.engine == "localstack":
        raise UsageError(
            "LocalStack has no saga clock: --time-scale needs the sandbox's own engine",
            hint="drop --time-scale (and SANDBOX_TIME_SCALE), or use --engine embedded or ministack-docker",
        )
    # One `up`, `down` or `reset` at a time per state folder: a second `up` waits, then finds
    # the engine running and the stack deployed.
    with locked_state_dir(settings, on_wait=_note):
        settings = adopt_running_engine(
            settings, is_chosen=engine is not None, is_port_chosen=port is not None
        )
        hook = (lambda environment: run_before_deploy(before_deploy, environment)) if before_deploy else None
        result = _with_progress(
            "starting", json_output, lambda progress: bring_up(settings, progress, _note, before_deploy=hook)
        )
    stack, deploy = result.stack, result.deploy
    clock = _sync_clock(stack, settings)
    warming = _start_prewarm(stack, settings) if prewarm else None
    summary = {
        "engine": {**_engine_summary(stack.engine), "isNew": result.is_new_engine},
        "clock": clock.to_json() if clock else None,
        "stack": {
            "name": settings.stack_name,
            "template": str(settings.template_path),
            "isDemo": settings.is_demo,
            "isChanged": bool(deploy and deploy.is_changed),
            "apiUrl": stack.api_url if stack.has_api else None,
            "outputs": _local_outputs(stack),
        },
        "seededProducts": result.seeded_products,
        "prewarming": warming or [],
        "timingsMs": result.timings_ms,
    }
    if json_output:
        print_json(summary)
        return
    engine_line = "started" if result.is_new_engine else "already running"
    stack_line = "deployed" if deploy and deploy.is_changed else "unchanged (no changes to deploy)"
    console.print(
        f"[green]✓[/green] engine {stack.engine.engine} {engine_line} "
        f"({engine_of(settings, stack.engine).describe(stack.engine)}, {stack.engine.endpoint_url})"
    )
    console.print(
        f"[green]✓[/green] stack {settings.stack_name} {stack_line} from {_template_name(settings)}"
    )
    if clock is not None and clock.time_scale is not None:
        console.print(f"[green]✓[/green] saga clock {format_time_scale(clock.time_scale)}")
    _print_stack(stack)
    if warming:
        console.print(f"[dim]warming {len(warming)} function(s) in the background (--no-prewarm: cold)[/dim]")
    tries = (
        "sandbox order, sandbox order --fail payment"
        if settings.is_demo
        else "sandbox execute, sandbox trace --last"
    )
    console.print(f"[dim]ready in {result.timings_ms['total'] / 1000:.1f}s — try: {tries}[/dim]")
    if ui:
        from cli import console_commands  # it loads the web server when it serves: `up` alone never does

        console_commands.serve_console(settings, alongside=_watch if watch else None)
    elif watch:
        _watch()


def _watch() -> None:
    from cli.watch_commands import run_watch  # file events load here: only `--watch` needs them

    run_watch()


def _print_stack(stack: LocalStack) -> None:
    from sandbox.targets import local_outputs

    rows = {"API": stack.api_url} if stack.has_api else {}
    outputs = local_outputs(stack.outputs, stack.engine.endpoint_url)
    rows.update({key: value for key, value in sorted(outputs.items()) if key not in ("ApiUrl",)})
    print_key_values(rows)


def down(json_output: JsonFlag = False) -> None:
    """Stop the engine `sandbox up` started (its Lambda workers, or its compose containers)."""
    from sandbox.engine import engine_of, locked_state_dir, stop_engine

    settings = Settings.load()
    repairs: list[str] = []

    def note_repair(line: str) -> None:
        repairs.append(line)
        _note(line)

    with locked_state_dir(settings, on_wait=_note):
        state = stop_engine(settings, notify=note_repair)
    if json_output:
        print_json(
            {
                "stopped": state is not None,
                "engine": state.engine if state else None,
                "pid": state.pid if state else None,
                "container": state.container_id if state else None,
            }
        )
    elif state is None:
        console.print(
            "no engine was recorded; the state folder is repaired"
            if repairs
            else "no sandbox engine was running"
        )
    else:
        console.print(
            f"[green]✓[/green] stopped engine {state.engine} "
            f"({engine_of(settings, state).describe(state)}, port {state.port})"
        )


def status(json_output: JsonFlag = False) -> None:
    """Show the engine, the stack and its outputs (API URL, tables, state machine)."""
    from sandbox.engine import recorded_engine, running_engine
    from sandbox.stack import find_stack

    settings = Settings.load()
    report: dict[str, Any] = {"engine": {"running": False}, "stack": {"deployed": False}}
    stack: LocalStack | None = None
    clock: EngineClock | None = None
    problem: str | None = None
    try:
        state = running_engine(settings)
        clock = _clock(state)
        report["engine"] = {
            "running": True,
            **_engine_summary(state),
            "uptimeSeconds": int(time.time() - state.started_at),
            "memory": _memory(state),
            "clock": clock.to_json() if clock else None,
        }
        stack = find_stack(settings)
        report["stack"] = {
            "deployed": True,
            "name": settings.stack_name,
            "template": str(settings.template_path),
            "isDemo": settings.is_demo,
            "apiUrl": stack.api_url if stack.has_api else None,
            "outputs": _local_outputs(stack),
        }
    except (EngineNotRunningError, StackNotFoundError) as error:
        problem = f"{error} — {error.hint}" if error.hint else str(error)
    if json_output:
        print_json(report)
        return
    engine = report["engine"]
    recorded = recorded_engine(settings)
    if engine["running"] and recorded:
        console.print(
            f"engine  {styled('RUNNING')} {engine['name']} {recorded.engine.describe(recorded.state)} "
            f"on {engine['endpoint']} (up {engine['uptimeSeconds']}s)"
        )
        if engine["memory"] is not None:
            console.print(f"memory  {_describe_memory(engine['memory'])}", highlight=False)
        if clock is not None:
            console.print(f"clock   {format_time_scale(clock.time_scale)}", highlight=False)
        for note in recorded.engine.status_notes(recorded.state):
            console.print(f"[dim]{note}[/dim]")
    else:
        console.print(f"engine  {styled('FAILED') if recorded else 'not running'}")
    if stack:
        console.print(f"stack   {styled('SUCCEEDED')} {settings.stack_name} from {_template_name(settings)}")
        _print_stack(stack)
    else:
        console.print(f"stack   {settings.stack_name} from {_template_name(settings)}")
    if problem:
        console.print(f"[dim]{problem}[/dim]")


def _clock(state: EngineState) -> EngineClock | None:
    """The engine's saga clock; None for an engine without one (LocalStack)."""
    if state.engine == "localstack":
        return None
    from sandbox.engine.clock import read_engine_clock

    return read_engine_clock(state.endpoint_url)


def _memory(state: EngineState) -> dict[str, Any] | None:
    """Summed RSS and PSS of the embedded engine and its Lambda workers; None for a container engine."""
    if state.pid is None:
        return None  # a container's processes are the container runtime's to measure
    from sandbox.bench.resources import read_process_tree  # /proc's figures, as `sandbox bench` reads them

    sample = read_process_tree(state.pid)
    if sample is None:
        return None

    def mb(value: int | None) -> float | None:
        return None if value is None else round(value / 2**20, 1)

    return {"rssMb": mb(sample.rss_bytes), "pssMb": mb(sample.pss_bytes), "workers": sample.descendants}


def _describe_memory(memory: dict[str, Any]) -> str:
    """``RSS 412 MB, PSS 203 MB (the engine and 7 processes under it)``: PSS splits shared pages among
    their sharers; the processes are the Lambda workers and the parents they are forked from."""
    pss = f", PSS {memory['pssMb']:.0f} MB" if memory["pssMb"] is not None else ""
    count = memory["workers"]
    return f"RSS {memory['rssMb']:.0f} MB{pss} (the engine and {count} process{'es' if count != 1 else ''} under it)"


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox up    sandbox up --port 4570 --json    sandbox up --time-scale 10    "
        "sandbox up --engine ministack-docker    "
        "LOCALSTACK_AUTH_TOKEN=... sandbox up --engine localstack"
    )(project_command(deploys=True)(up))
    app.command(epilog="Example:  sandbox down")(project_command()(down))
    app.command(epilog="Examples:  sandbox status    sandbox status --json")(project_command()(status))
