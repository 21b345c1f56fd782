"""`sandbox`: run the outbox -> saga -> compensation flow offline, and break it on purpose."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
import typer.main
from botocore.exceptions import BotoCoreError, ClientError
from rich.markup import escape

from cli import aws_commands, bench_commands, fault_commands, trace_commands, watch_commands
from cli.aws_commands import EndpointOption, ProfileOption, RegionOption, StageOption, Target
from cli.order_options import parse_faults, parse_item
from cli.output import (
    console,
    error_console,
    format_step,
    print_json,
    print_key_values,
    report_error,
    styled,
)
from sandbox import __version__
from sandbox.aws import AwsSession, AwsTarget, aws_orders_client
from sandbox.engine import (
    EngineState,
    adopt_running_engine,
    engine_of,
    locked_state_dir,
    recorded_engine,
    running_engine,
    stop_engine,
)
from sandbox.errors import EngineNotRunningError, SandboxError, StackNotFoundError, UsageError
from sandbox.orders import OrdersClient
from sandbox.runs import DEFAULT_ITEMS, OrderEvent, OrderRequest, OrderRun, StepFinished, run_order
from sandbox.settings import ENGINES, Settings
from sandbox.stack import LocalStack, bring_up, find_stack

try:  # Typer vendors Click as typer._click since 0.2x; older Typers run on Click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException  # type: ignore[no-redef,import-not-found,unused-ignore]

app = typer.Typer(
    help="Saga sandbox: the transactional outbox, idempotency and a compensating saga, running "
    "offline on a local AWS engine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
T = TypeVar("T")


TargetOption = Annotated[Target, typer.Option(help="The local engine's stack, or the AWS stack.")]


def orders_client(target: Target, local: LocalStack | None = None, **aws_flags: str | None) -> OrdersClient:
    """The order API of the local stack, or of the AWS stack (requests signed when required)."""
    if target is Target.local:
        return OrdersClient((local or find_stack(Settings.load())).api_url)
    return aws_orders_client(AwsSession(AwsTarget.load(**aws_flags)))


def _version(value: bool) -> None:
    if value:
        console.print(f"sandbox {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    _state["debug"] = debug


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


def _local_outputs(stack: LocalStack) -> dict[str, str]:
    """The stack's outputs with ``ApiUrl`` the URL that answers on the local engine.

    The stack's own ``ApiUrl`` output names the AWS host the API would have there, which does not
    resolve locally; a script reading ``.stack.outputs.ApiUrl`` gets the one that works (as
    ``.stack.apiUrl``).
    """
    return {**stack.outputs, "ApiUrl": stack.api_url}


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


@app.command(
    epilog="Examples:  sandbox up    sandbox up --port 4570 --json    sandbox up --engine ministack-docker    "
    "LOCALSTACK_AUTH_TOKEN=... sandbox up --engine localstack"
)
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
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Then push each saved edit to the engine (hot reload).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start the local engine and deploy the stack (a no-op when both are already up)."""
    settings = Settings.load(port=port, engine=engine)
    # One `up`, `down` or `reset` at a time per state folder: a second `up` waits, then finds
    # the engine running and the stack deployed.
    with locked_state_dir(settings, on_wait=_note):
        settings = adopt_running_engine(
            settings, is_chosen=engine is not None, is_port_chosen=port is not None
        )
        result = _with_progress("starting", json_output, lambda progress: bring_up(settings, progress, _note))
    stack, deploy = result.stack, result.deploy
    summary = {
        "engine": {**_engine_summary(stack.engine), "isNew": result.is_new_engine},
        "stack": {
            "name": settings.stack_name,
            "isChanged": bool(deploy and deploy.is_changed),
            "apiUrl": stack.api_url,
            "outputs": _local_outputs(stack),
        },
        "seededProducts": result.seeded_products,
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
    console.print(f"[green]✓[/green] stack {settings.stack_name} {stack_line}")
    _print_stack(stack)
    console.print(
        f"[dim]ready in {result.timings_ms['total'] / 1000:.1f}s — try: "
        "sandbox order, sandbox order --fail payment[/dim]"
    )
    if watch:
        watch_commands.run_watch()


def _print_stack(stack: LocalStack) -> None:
    rows = {"API": stack.api_url}
    rows.update({key: value for key, value in sorted(stack.outputs.items()) if key not in ("ApiUrl",)})
    print_key_values(rows)


@app.command(epilog="Example:  sandbox down")
def down(json_output: JsonFlag = False) -> None:
    """Stop the engine `sandbox up` started (its Lambda workers, or its compose containers)."""
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


@app.command(epilog="Examples:  sandbox status    sandbox status --json")
def status(json_output: JsonFlag = False) -> None:
    """Show the engine, the stack and its outputs (API URL, tables, state machine)."""
    settings = Settings.load()
    report: dict[str, Any] = {"engine": {"running": False}, "stack": {"deployed": False}}
    stack: LocalStack | None = None
    problem: str | None = None
    try:
        state = running_engine(settings)
        report["engine"] = {
            "running": True,
            **_engine_summary(state),
            "uptimeSeconds": int(time.time() - state.started_at),
        }
        stack = find_stack(settings)
        report["stack"] = {
            "deployed": True,
            "name": settings.stack_name,
            "apiUrl": stack.api_url,
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
        for note in recorded.engine.status_notes(recorded.state):
            console.print(f"[dim]{note}[/dim]")
    else:
        console.print(f"engine  {styled('FAILED') if recorded else 'not running'}")
    if stack:
        console.print(f"stack   {styled('SUCCEEDED')} {settings.stack_name}")
        _print_stack(stack)
    if problem:
        console.print(f"[dim]{problem}[/dim]")


@app.command(
    epilog="Examples:  sandbox order    sandbox order --fail payment    "
    "sandbox order --flaky shipping:2 --item grinder:1    sandbox order --idempotency-key k1 --json",
)
def order(
    customer: Annotated[str, typer.Option(help="Customer id.")] = "demo-customer",
    item: Annotated[
        list[str] | None,
        typer.Option(
            help="PRODUCT:QTY[:PRICE], repeatable; the catalog prices each line (a PRICE given must "
            "match it). Default: espresso-beans:1, mug:2."
        ),
    ] = None,
    fail: Annotated[
        str | None, typer.Option(help="Make this step fail for good: inventory, payment or shipping.")
    ] = None,
    flaky: Annotated[
        list[str] | None,
        typer.Option(help="STEP[:N]: the step's first N attempts (default 2) fail transiently."),
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header to send.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once the order is accepted.")] = False,
    duplicate_delivery: Annotated[
        bool, typer.Option("--duplicate-delivery", help="The outbox record reaches the publisher twice.")
    ] = False,
    crash: Annotated[
        str | None, typer.Option(help="publisher: it dies after starting the saga, before acknowledging.")
    ] = None,
    step_timeout: Annotated[
        str | None,
        typer.Option("--timeout", help="STEP: its first attempt outlives the Task's TimeoutSeconds."),
    ] = None,
    hang: Annotated[
        str | None,
        typer.Option(
            help="STEP: every attempt outlives its timeout, then completes late; the saga compensates "
            "the step itself too (about 20 s)."
        ),
    ] = None,
    poison: Annotated[
        bool, typer.Option("--poison", help="An unreadable outbox record: retried, then dead-lettered.")
    ] = False,
    replay: Annotated[
        bool,
        typer.Option("--replay", help="Once the saga ends, start it again as an operator redrive would."),
    ] = False,
    wait_seconds: Annotated[float, typer.Option(help="Seconds to wait for the saga.")] = 60,
    target: TargetOption = Target.local,
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Place an order through the HTTP API and follow its saga live; faults combine."""
    request = OrderRequest(
        customer_id=customer,
        items=tuple(parse_item(text) for text in item) if item else DEFAULT_ITEMS,
        faults=parse_faults(
            fail, flaky or [], timeout=step_timeout, hang=hang, crash=crash,
            is_duplicate_delivery=duplicate_delivery, is_poison=poison,
        ),
        idempotency_key=idempotency_key,
    )  # fmt: skip
    if (poison or replay) and target is not Target.local:
        raise UsageError("--poison and --replay work on the local stack only")
    settings = Settings.load()
    local = find_stack(settings) if target is Target.local else None
    client = orders_client(
        target, local, stage=stage, region=region, profile=profile, endpoint_url=endpoint_url
    )
    run = run_order(
        client, request, follow=not no_wait, wait_seconds=wait_seconds, replay=replay,
        local=(local, settings.region) if local else None,
        on_event=(lambda _: None) if json_output or no_wait else _print_order_event,
    )  # fmt: skip
    document = run.to_json()
    if target is Target.local and run.final is not None:
        document["traceCommand"] = trace_commands.trace_command(run.order_id)
    if json_output:
        print_json(document)
        if not run.is_as_expected:
            raise typer.Exit(code=1)
        return
    _print_order_run(run)
    if target is Target.local:  # traces read the local engine
        console.print(f"[dim]trace: {trace_commands.trace_command(run.order_id)}[/dim]", highlight=False)
    if not run.is_as_expected:
        raise SandboxError(
            f"order {run.order_id} ended {run.status} (expected {request.expected_status})",
            hint=(run.final or {}).get("failureReason") or "see its steps above",
        )


REPLAYED = "replayed: the first response for this key (nothing new was placed)"


def _print_order_event(event: OrderEvent) -> None:
    if isinstance(event, StepFinished):
        console.print(format_step(event.step), highlight=False, soft_wrap=True)
    elif event.is_poisoned:
        console.print(
            f"order [bold]{event.order_id}[/bold] accepted with a poisoned outbox record; the publisher retries it…"
        )
    elif event.is_replayed:
        console.print(
            f"order [bold]{event.order_id}[/bold] {REPLAYED}, total {event.total_amount}; its saga:",
            highlight=False,
        )
    else:
        console.print(f"order [bold]{event.order_id}[/bold] accepted (total {event.total_amount}); saga:")


def _print_order_run(run: OrderRun) -> None:
    if run.dead_letter is not None:
        console.print(
            f"its outbox record is in the on-failure queue ({run.dead_letter.condition}); the saga never started.\n"
            "[dim]`sandbox dlq` lists it; `sandbox dlq --redrive` repairs it from the order and sends it back.[/dim]"
        )
        return
    final = run.final
    if final is None and run.is_replayed:
        console.print(
            f"order {run.order_id} {REPLAYED}, {styled(run.status)} when placed, "
            f"total {run.placed['totalAmount']}",
            highlight=False,
        )
        return
    if final is None:
        console.print(
            f"order {run.order_id} accepted: {styled(run.status)}, total {run.placed['totalAmount']}"
        )
        return
    reason = f" — {final['failureReason']}" if final.get("failureReason") else ""
    console.print(f"order {styled(final['status'])} in {run.elapsed_ms / 1000:.2f}s{reason}")
    if final["compensations"]:
        console.print(f"[dim]compensated: {' → '.join(final['compensations'])}[/dim]")
    if run.replay is not None:
        console.print(
            f"replayed the saga as {run.replay['name']}: {styled(run.replay['status'])} "
            "— steps that had run found their idempotency records, so no side effect repeated"
        )


class OrderStatus(StrEnum):
    """An order's status, as `sandbox orders --status` takes it."""

    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


ORDER_COLUMNS = ("order", "customer", "status", "total", "created", "reason")


@app.command(
    epilog="Examples:  sandbox orders    sandbox orders --status FAILED --limit 5    "
    "sandbox orders --target aws --json"
)
def orders(
    limit: Annotated[
        int | None, typer.Option(min=1, help="Show at most N orders (newest first).", show_default="all")
    ] = None,
    status: Annotated[
        OrderStatus | None, typer.Option(case_sensitive=False, help="Only orders in this status.")
    ] = None,
    target: TargetOption = Target.local,
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """List recent orders (the API's 50 newest) with their status and failure reason, full ids."""
    client = orders_client(target, stage=stage, region=region, profile=profile, endpoint_url=endpoint_url)
    listed = client.list_orders(limit=limit, status=status.value if status else None)
    if json_output:
        print_json({"orders": listed})
        return
    if not listed:
        console.print(
            f"no {status.value} orders among the 50 newest" if status
            else "no orders yet — place one with `sandbox order`"
        )  # fmt: skip
        return
    _print_orders(listed)


def _print_orders(listed: list[dict[str, Any]]) -> None:
    """One line per order, columns aligned, nothing cut: an id copies whole into `sandbox trace`."""
    rows = [
        (
            entry["orderId"],
            entry.get("customerId", ""),
            entry["status"],
            str(entry.get("totalAmount", "")),
            entry.get("createdAt", "")[:19],
            entry.get("failureReason") or "",
        )
        for entry in listed
    ]
    widths = [
        max(len(cells[index]) for cells in [ORDER_COLUMNS, *rows]) for index in range(len(ORDER_COLUMNS))
    ]

    def line(cells: tuple[str, ...], status: str | None) -> str:
        padded = [f"{cell:<{width}}" for cell, width in zip(cells[:-1], widths, strict=False)]
        text = [escape(cell) for cell in [*padded, cells[-1]]]
        if status is not None:
            text[2] = styled(status) + " " * (widths[2] - len(status))
        return "  ".join(text).rstrip()

    console.print(f"[bold]{line(ORDER_COLUMNS, None)}[/bold]", highlight=False, soft_wrap=True)
    for cells in rows:
        console.print(line(cells, cells[2]), highlight=False, soft_wrap=True)


aws_commands.register(app)
fault_commands.register(app)
watch_commands.register(app)
trace_commands.register(app)
bench_commands.register(app)


def repeated_option(command: Any, args: list[str]) -> UsageError | None:
    """A single-value option given twice in ``args``, as a usage error; None when there is none.

    Click keeps the last value of a repeated option and says nothing, so `--fail payment --fail
    shipping` would silently fail shipping only. Options that take a list (`--item`) may repeat.
    """
    index = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
    subcommand = getattr(command, "commands", {}).get(args[index]) if index is not None else None
    if index is None or subcommand is None:
        return None  # no command, or an unknown one: Click says so
    options = [param for param in subcommand.params if param.param_type_name == "option"]
    valued = {opt: param for param in options if not param.is_flag and not param.count for opt in param.opts}
    seen: dict[str, tuple[str, str]] = {}
    rest = args[index + 1 :]
    position = 0
    while position < len(rest) and rest[position] != "--":
        name, has_value, value = rest[position].partition("=")
        param = valued.get(name)
        position += 1
        if param is None:
            continue
        if not has_value:  # the value is the next argument, whatever it looks like
            value = rest[position] if position < len(rest) else ""
            position += 1
        if param.multiple or param.nargs != 1:
            continue
        if param.name in seen:
            first_name, first_value = seen[param.name]
            repeatable = sorted({param.opts[0] for param in options if param.multiple})
            return UsageError(
                f"{first_name} given twice ({first_value!r}, then {value!r}): it takes one value",
                hint="give it once"
                + (f"; options that repeat here: {', '.join(repeatable)}" if repeatable else ""),
            )
        seen[param.name] = (name, value)
    return None


def main() -> None:
    """Console entry point: the CLI's one error boundary.

    Click runs without its standalone mode, so its usage errors (an unknown option, a value of the
    wrong type, a missing argument) reach this boundary too: one red line and exit code 1, like
    every other mistake, instead of Click's boxed panel and exit code 2.
    """
    args = sys.argv[1:]
    try:
        command = typer.main.get_command(app)
        repeated = repeated_option(command, args)
        if repeated is not None:
            raise repeated
        code = command.main(args=args, prog_name="sandbox", standalone_mode=False)
    except ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `sandbox`: the help is the answer
            if error.format_message():
                typer.echo(error.format_message())
            sys.exit(0)
        context = getattr(error, "ctx", None)
        where = context.command_path if context is not None else "sandbox"
        message = " ".join(error.format_message().split())  # one line, even for a list of choices
        report_error(UsageError(f"{where}: {message}", hint=f"see `{where} --help`"))
        sys.exit(1)
    except typer.Abort:
        error_console.print("aborted")
        sys.exit(1)
    except SandboxError as error:
        if _state["debug"]:
            raise
        report_error(error)
        sys.exit(1)
    except (ClientError, BotoCoreError) as error:
        if _state["debug"]:
            raise
        report_error(
            SandboxError(
                f"the engine refused a request: {error}", hint="rerun with --debug for the traceback"
            )
        )
        sys.exit(1)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
    except Exception as error:  # the boundary: a bug still gets one line, the traceback on --debug
        if _state["debug"]:
            raise
        report_error(
            SandboxError(
                f"unexpected error: {type(error).__name__}: {error}",
                hint="this is a bug in the sandbox; rerun with --debug and report the traceback",
            )
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
