"""`sandbox trace` and `sandbox logs`: what happened to an execution or an order, and what the functions said."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from cli.options import JsonFlag, complete_order_id, project_command
from cli.output import STATUS_STYLES, console, error_console, escape, print_json, trace_command
from sandbox.errors import UsageError

# The trace and log readers (and boto3 under them) load in the commands that print them.
if TYPE_CHECKING:
    from sandbox.logs import LogLine
    from sandbox.settings import Settings
    from sandbox.stack import LocalStack
    from sandbox.trace import ExecutionTrace, StateVisit, Trace, TraceEntry

MAX_LOG_LINES = 20  # a task attempt's log lines shown in a trace; `sandbox logs` shows them all

LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "cyan",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold red",
    "PLATFORM": "dim",  # sandbox.logs.PLATFORM: the runtime's START / END / REPORT lines
}
ENTRY_STYLES = {
    **STATUS_STYLES,
    "201": "green",
    "PUT": "green",
    "SENT": "green",
    "RETRIED": "yellow",
    "DUPLICATE": "yellow",
    "409": "yellow",
    "422": "red",
}
MARKERS = {
    "request": "→",
    "replay": "⟳",
    "refused": "✗",
    "transaction": "▤",
    "delivery": "⇢",
    "event": "◆",
    "execution": "▶",
    "state": "→",
    "compensation": "↩",
    "retry": "↻",
    "catch": "⤷",
    "execution-end": "■",
    "status": "■",
    "notification": "✉",
}


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def _styled(text: str, status: str | None, width: int) -> str:
    style = ENTRY_STYLES.get(status or "", "white")
    return f"[{style}]{escape(f'{text:<{width}}')}[/{style}]"


def format_entry(entry: TraceEntry, started: datetime) -> str:
    """One timeline line: time, offset, source, marker and name, status, duration, detail."""
    offset = round((entry.at - started).total_seconds() * 1000)
    name = f"{MARKERS.get(entry.kind, '·')} {entry.name}"
    took = f"{entry.duration_ms} ms" if entry.duration_ms is not None else ""
    return (
        f"  {_clock(entry.at)} {offset:>+7} ms  {entry.source:<13} {escape(f'{name:<30}')} "
        f"{_styled(entry.status or '', entry.status, 10)} {took:>8}  [dim]{escape(entry.detail)}[/dim]"
    )


def print_trace(trace: Trace) -> None:
    started = trace.started_at
    total = f" over {trace.duration_ms / 1000:.2f}s" if trace.duration_ms is not None else ""
    console.print(f"trace of order [bold]{trace.order_id}[/bold]{total}", highlight=False)
    if started:
        for entry in trace.entries:
            console.print(format_entry(entry, started), highlight=False, soft_wrap=True)
    status = trace.status or "UNKNOWN"
    reason = f" — {escape(trace.failure_reason)}" if trace.failure_reason else ""
    style = STATUS_STYLES.get(status, "white")
    console.print(f"order [{style}]{status}[/{style}]{reason}", highlight=False, soft_wrap=True)
    for note in trace.notes:
        console.print(f"[dim]note: {escape(note)}[/dim]", highlight=False, soft_wrap=True)
    console.print(f"[dim]as a diagram: {trace_command(trace.order_id)} --mermaid[/dim]", highlight=False)


def _failure(error: str | None, cause: object) -> str:
    from sandbox.trace.execution import cause_message

    message = cause_message(cause)
    return f"{error or 'failed'}: {message}" if message else str(error or "failed")


def _state_line(state: StateVisit, started: datetime) -> str:
    from sandbox.trace.execution import tries_text
    from sandbox.trace.model import millis_between

    offset = millis_between(started, state.entered_at)
    marker = "↩" if state.is_compensation else ("✗" if state.status == "FAILED" else "→")
    name = f"{'  ' * state.depth}{marker} {state.name}"
    tries = tries_text(state)
    took = f"{state.duration_ms} ms" if state.duration_ms is not None else ""
    notes = ["compensation"] if state.is_compensation else []
    notes += [state.function] if state.function else []
    return (
        f"  {_clock(state.entered_at)} {offset:>+7} ms  {escape(f'{name:<32}')} "
        f"{_styled(state.status, state.status, 10)} {tries:<11} {took:>8}  [dim]{escape(', '.join(notes))}[/dim]"
    )


def print_execution_trace(trace: ExecutionTrace) -> None:
    """An execution's trace for people: a line per state, its attempts, Catch routes and log lines."""
    from sandbox.logs import PLATFORM
    from sandbox.trace.execution import attempt_words, redrive_text

    took = f" over {trace.duration_ms / 1000:.2f}s" if trace.duration_ms is not None else ""
    console.print(
        f"execution [bold]{escape(trace.name)}[/bold] of [bold]{escape(trace.state_machine)}[/bold]{took}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    pad = " " * 32
    redrive = 0
    for state in trace.states:
        if state.redrive != redrive:
            redrive = state.redrive
            console.print(f"  [yellow]{escape(redrive_text(redrive))}[/yellow]", highlight=False)
        console.print(_state_line(state, trace.started_at), highlight=False, soft_wrap=True)
        indent = pad[: 2 * state.depth]
        for attempt in state.attempts:
            if len(state.attempts) > 1 or attempt.status != "SUCCEEDED" or attempt.fault or attempt.held_text:
                style = "green" if attempt.status == "SUCCEEDED" else "red"
                outcome = (
                    attempt.status
                    if attempt.status == "SUCCEEDED"
                    else _failure(attempt.error, attempt.cause)
                )
                named, then = attempt_words(state, attempt)
                injected = (
                    f" [magenta]⚡ {escape(attempt.fault_text)}[/magenta]" if attempt.fault_text else ""
                )
                injected += f" [cyan]⏸ {escape(attempt.held_text)}[/cyan]" if attempt.held_text else ""
                console.print(
                    f"{pad}{indent}{named}: [{style}]{escape(outcome)}[/{style}]{injected}{then}",
                    highlight=False, soft_wrap=True,
                )  # fmt: skip
            shown = [line for line in attempt.log_lines if line.level != PLATFORM]
            for line in shown[:MAX_LOG_LINES]:
                level_style = LEVEL_STYLES.get(line.level, "white")
                console.print(
                    f"{pad}{indent}  [dim]│[/dim] [{level_style}]{line.level:<8}[/{level_style}] "
                    f"{escape(line.message)}",
                    highlight=False, soft_wrap=True,
                )  # fmt: skip
            if len(shown) > MAX_LOG_LINES:
                console.print(f"{pad}{indent}  [dim]│ … {len(shown) - MAX_LOG_LINES} more lines[/dim]")
        if state.catch:
            matched = f" (matched {state.catch.matched})" if state.catch.matched else ""
            console.print(
                f"{pad}{indent}[yellow]⤷ Catch {escape(state.catch.error or 'error')}{escape(matched)} → "
                f"{escape(state.catch.next)}[/yellow]",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
        elif state.status == "FAILED" and state.type != "Fail" and not state.attempts and state.error:
            console.print(
                f"{pad}{indent}[red]{escape(_failure(state.error, state.cause))}[/red]", highlight=False
            )
    ending = f" — {escape(_failure(trace.error, trace.cause))}" if trace.error or trace.cause else ""
    style = STATUS_STYLES.get(trace.status, "white")
    console.print(f"execution [{style}]{trace.status}[/{style}]{ending}", highlight=False, soft_wrap=True)
    for note in trace.notes:
        console.print(f"[dim]note: {escape(note)}[/dim]", highlight=False, soft_wrap=True)


def _is_order(stack: LocalStack, settings: Settings, ref: str) -> bool:
    """Whether ``ref`` is an order of the demo's stack (its ORDER# item exists)."""
    from sandbox.executions import is_execution_arn
    from sandbox.trace.reading import read_order_items

    if not stack.is_demo or is_execution_arn(ref):
        return False
    order, _ = read_order_items(
        stack.client("dynamodb", settings.region), stack.outputs["OrdersTableName"], ref
    )
    return order is not None


def trace(
    execution: Annotated[
        str | None,
        typer.Argument(
            help="An execution's ARN or name (with --last: a state machine); on the demo's stack, an order id "
            "(`sandbox orders` lists them). Without one: the latest execution (the latest order on the demo).",
            autocompletion=complete_order_id,
            show_default=False,
        ),
    ] = None,
    last: Annotated[
        bool,
        typer.Option(
            "--last",
            help="Trace the latest execution, of the state machine given as the argument (logical id, name "
            "or ARN) or of any; on the demo's stack without an argument, the latest order.",
        ),
    ] = False,
    mermaid: Annotated[
        bool,
        typer.Option(
            "--mermaid", help="An order's trace as a mermaid sequence diagram (paste it into a README or PR)."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """What one execution of any state machine of the stack did, state by state; on the demo's stack, an order's whole timeline.

    An execution's trace: the states in order with their times, each task's attempts (retries) with errors and causes, which Catch sent a failed state where, the states run after the failure marked as compensation, and each Lambda task's log lines (by request id).

    On the demo's stack an order id (an order with an ORDER# item) is traced as the order: request, outbox, stream, events, saga, compensations, notifications. Anything else is looked up as an execution.
    """
    from sandbox.executions import ExecutionNotFoundError, find_execution, is_execution_arn
    from sandbox.orders import OrdersClient
    from sandbox.settings import Settings
    from sandbox.stack import find_stack
    from sandbox.trace import render_mermaid, trace_execution, trace_order

    settings = Settings.load()
    stack = find_stack(settings)
    is_demo = stack.is_demo
    if execution is None and is_demo:  # today's `sandbox trace` (and --last): the latest order
        order_id: str | None = OrdersClient(stack.api_url).latest_order_id()
    elif execution is not None and _is_order(stack, settings, execution):
        if last:
            raise UsageError(
                f"{execution} is an order: give an ORDER_ID or --last, not both",
                hint="--last takes a state machine, or nothing for the latest order",
            )
        order_id = execution
    else:
        order_id = None
    if order_id is not None:
        result = trace_order(stack, settings, order_id)
        if json_output:
            document = result.to_json()
            if mermaid:
                document["mermaid"] = render_mermaid(result)
            print_json(document)
        elif mermaid:
            sys.stdout.write(render_mermaid(result))
        else:
            print_trace(result)
        return
    if mermaid:
        raise UsageError(
            "--mermaid draws an order's trace; an execution's trace is text or --json",
            hint="drop --mermaid",
        )
    try:
        arn = find_execution(stack, settings.region, settings.stack_name, execution, last=last)
    except ExecutionNotFoundError as error:
        if not is_demo or last or execution is None or is_execution_arn(execution):
            raise
        raise ExecutionNotFoundError(
            f"order {execution} not found, and no execution is named {execution}",
            hint="list recent orders with `sandbox orders`, or give an execution's name or ARN",
        ) from error
    traced = trace_execution(stack, settings.region, settings.stack_name, arn)
    if json_output:
        print_json(traced.to_json())
    else:
        print_execution_trace(traced)


def format_line(line: LogLine, width: int) -> str:
    """One log line for people: time, function, level (colored), message, the handler's own fields."""
    style = LEVEL_STYLES.get(line.level, "white")
    fields = " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}"
        for key, value in line.extras.items()
    )
    message = escape(line.message.replace("\t", "  "))
    text = f"[{style}]{message}[/{style}]" if line.level != "INFO" else message
    extra = f"  [dim]{escape(fields)}[/dim]" if fields else ""
    level = f"[{style}]{line.level:<8}[/{style}]"
    return f"{_clock(line.at)} {escape(f'{line.function:<{width}}')} {level} {text}{extra}"


def logs(
    function: Annotated[
        str | None,
        typer.Argument(
            help="A function of the stack: its logical id (PaymentFunction), its name, or its short name "
            "(the demo's payment, order-api, ...); default: all of them.",
            show_default=False,
        ),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(
            "--order",
            help="Only the requests whose lines name this text (an order id on the demo).",
            autocompletion=complete_order_id,
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only lines this recent: 30s, 5m, 1h, 2d (default: all; with --follow, new lines)."
        ),
    ] = None,
    all_requests: Annotated[
        bool,
        typer.Option(
            "--all-requests",
            help="Also show requests that logged nothing but START/END/REPORT (e.g. the CLI's GET polls).",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON document (with --follow: one JSON object per line).")
    ] = False,
) -> None:
    """The stack's function logs from the engine, colored by level; one function, or the requests naming an order."""
    from sandbox.function_logs import FunctionLogs
    from sandbox.logs import from_millis, parse_since
    from sandbox.orders import OrdersClient
    from sandbox.settings import Settings
    from sandbox.stack import find_stack

    window = parse_since(since) if since else None
    with remembered_ctrl_c() as ctrl_c:
        settings = Settings.load()
        stack = find_stack(settings)
        logs = FunctionLogs.open(
            stack, settings.region, settings.stack_name, function=function, order_id=order,
            since=window, is_quiet_included=all_requests,
        )  # fmt: skip
        width = max((len(name) for name in logs.functions), default=10)
        if order and follow and stack.is_demo:
            OrdersClient(stack.api_url).check_order_exists(order)  # an unknown id would never log a line
        if not follow:
            lines = logs.read()
            if order and not lines and stack.is_demo:  # a reset order's lines are still shown
                OrdersClient(stack.api_url).check_order_exists(order)
            if json_output:
                print_json({"lines": [line.to_json() for line in lines]})
                return
            for line in lines:
                console.print(format_line(line, width), highlight=False, soft_wrap=True)
            if not lines:
                console.print(
                    "[dim]no log lines" + (f" for order {escape(order)}" if order else "") + "[/dim]"
                )
            return
        follower = logs.follower()
        if ctrl_c.is_pressed:
            raise KeyboardInterrupt  # pressed while starting: the CLI's "interrupted", exit 130

        def emit(line: LogLine) -> None:
            if json_output:
                sys.stdout.write(json.dumps(line.to_json(), default=str) + "\n")
                sys.stdout.flush()
            else:
                console.print(format_line(line, width), highlight=False, soft_wrap=True)

        error_console.print(
            f"[dim]following {', '.join(logs.functions)} from {_clock(from_millis(follower.start_ms))} — Ctrl-C to stop[/dim]",
            highlight=False,
        )
        follow_lines(follower.poll, emit, ctrl_c)
        error_console.print(
            "[dim]stopped following[/dim]", highlight=False
        )  # Ctrl-C is how --follow ends: exit 0


class CtrlC:
    """A SIGINT handler that raises KeyboardInterrupt, as Python's own does, and remembers the press.

    Python raises KeyboardInterrupt wherever the main thread is when the signal lands. Inside a
    finalizer (a garbage-collected urllib3 pool closing its sockets, an HTTP response being closed)
    the interpreter prints or clears the exception and carries on, so a loop that waits for the
    exception alone can poll forever after Ctrl-C. The flag outlives the lost exception.
    """

    def __init__(self) -> None:
        self.is_pressed = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.is_pressed = True
        raise KeyboardInterrupt


@contextmanager
def remembered_ctrl_c() -> Iterator[CtrlC]:
    """Handle SIGINT with a ``CtrlC`` inside the block; the previous handler is restored after it."""
    ctrl_c = CtrlC()
    # Only the main thread receives signals; an ignored SIGINT (e.g. a `nohup` run) stays ignored.
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield ctrl_c
        return
    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        yield ctrl_c
    finally:
        signal.signal(signal.SIGINT, previous)


def follow_lines(
    poll: Callable[[], list[LogLine]],
    emit: Callable[[LogLine], None],
    ctrl_c: CtrlC,
    *,
    interval: float | None = None,
) -> None:
    """Follow until Ctrl-C, polling every ``interval`` seconds (default: FOLLOW_INTERVAL).

    The KeyboardInterrupt ends a poll or the pause at once; if a finalizer swallowed it, the
    remembered press ends the loop after the poll it landed in.
    """
    from sandbox.function_logs import FOLLOW_INTERVAL, follow

    interval = FOLLOW_INTERVAL if interval is None else interval
    with suppress(KeyboardInterrupt):
        follow(poll, emit, lambda: ctrl_c.is_pressed, interval=interval)


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox trace EXECUTION_NAME    sandbox trace --last    "
        "sandbox trace --last MyStateMachine    sandbox trace EXECUTION_ARN --json    "
        "sandbox trace ORDER_ID --mermaid (demo)"
    )(project_command()(trace))
    app.command(
        epilog="Examples:  sandbox logs    sandbox logs PaymentFunction    sandbox logs payment --order ORDER_ID    "
        "sandbox logs --follow    sandbox logs MyFunction --since 5m"
    )(project_command()(logs))
