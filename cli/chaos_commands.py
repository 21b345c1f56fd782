"""`sandbox chaos`: many executions of any saga under random faults, then checks that prove what held.

On the order demo it places orders through the API (the demo's invariants: nothing lost or done
twice); on any stack, or with --inputs, it runs executions of a state machine with the user's inputs
and judges them with the failure map's checks and the user's own invariants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.kinds import ORDER_FAULT_KINDS as FAULT_KINDS
from cli.options import JsonFlag, StateMachineArgument, project_command
from cli.output import console, error_console, facts_table, print_each_stage, print_json, styled
from sandbox.errors import SandboxError, UsageError
from sandbox.fault_kinds import SAGA_CHAOS_KINDS as CHAOS_KINDS

# The runners (the bench's, the saga chaos's) and their checks load when a run starts.
if TYPE_CHECKING:
    from sandbox.bench import BenchProgress, Progress
    from sandbox.chaos import ChaosReport
    from sandbox.saga_chaos import SagaChaosConfig, SagaChaosReport
    from sandbox.settings import Settings


@contextmanager
def _progress(total: int, is_quiet: bool) -> Iterator[Progress]:
    """Bars for orders accepted, orders terminal and sagas replayed on a terminal; stage lines elsewhere."""
    if is_quiet:
        yield lambda _: None
        return
    if not error_console.is_terminal:
        yield print_each_stage(lambda progress: f"chaos: {progress.stage}")
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    with Bars(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[stage]}"),
        console=error_console,
        transient=True,
    ) as bars:
        tasks = {name: bars.add_task(name, total=total, stage="") for name in ("accepted", "terminal")}
        tasks["replayed"] = bars.add_task("replayed", total=None, stage="", visible=False)

        def update(progress: BenchProgress) -> None:
            bars.update(
                tasks["accepted"], completed=progress.accepted + progress.refused, stage=progress.stage
            )
            bars.update(tasks["terminal"], completed=progress.terminal, total=total - progress.refused)
            if progress.replays:
                bars.update(
                    tasks["replayed"], completed=progress.replayed, total=progress.replays, visible=True
                )

        yield update


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{styled(name)} {count}" for name, count in sorted(counts.items())) or "none"


def _print_report(report: ChaosReport) -> None:
    from sandbox.bench import SHOWN_VIOLATIONS

    summary = report.as_dict()
    table = facts_table()
    run = summary["run"]
    table.add_row(
        "run",
        f"{run['orders']} orders, {run['concurrency']} clients, seed {run['seed']}, faults "
        f"{', '.join(run['faults']) or 'none'}, {run['duplicateRequests']:g} sent twice "
        f"(customers {run['customerPrefix']}…)",
    )
    planned = ", ".join(f"{kind} {n}" for kind, n in sorted(summary["plan"]["kinds"].items()))
    table.add_row("planned", planned or "ordinary orders only")
    speed = summary["throughput"]
    accepted = f"{summary['accepted']} accepted" + (
        f", [red]{summary['refused']} refused[/red]" if summary["refused"] else ""
    )
    table.add_row(
        "throughput",
        f"{accepted}; {speed['acceptedPerSecond']} accepted/s, {speed['completedPerSecond']} terminal/s, "
        f"the last {speed['totalSeconds']} s after the start",
    )
    if latency := summary["latencyMs"]:
        percentiles = ", ".join(f"{name} {latency[name]:.0f} ms" for name in ("p50", "p95", "p99", "max"))
        table.add_row("POST → terminal", percentiles)
    table.add_row("outcomes", _counts(summary["statusCounts"]))
    for kind, counts in summary["outcomesByFault"].items():
        table.add_row(f"  {kind}", _counts(counts))
    duplicates = summary["duplicates"]
    if duplicates["sent"]:
        table.add_row(
            "sent twice",
            f"{duplicates['sent']}: {duplicates.get('sameOrder', 0)} answered with the same order, "
            f"{duplicates.get('inFlight', 0)} in flight (409), {duplicates.get('other', 0)} otherwise",
        )
    replays = summary["replays"]
    if replays["count"]:
        table.add_row("replays", f"{replays['count']}: {_counts(replays['ends'])}")
    resources = summary["resources"]
    table.add_row(
        "engine + workers",
        f"{resources['cpuSecondsPerOrder']:.3f} CPU s/order ({resources['cpuSeconds']} s), peak RSS "
        f"{resources['peakRssMb']:.0f} MB, peak {resources['peakWorkers']} processes under the engine"
        if resources
        else summary["resourcesNote"] or "not measured",
    )
    console.print(table, highlight=False)
    for check in report.verdict.checks:
        if check.skipped:
            console.print(f"[dim]– {check.name}: skipped ({check.skipped})[/dim]")
        elif check.holds:
            console.print(f"[green]✓[/green] {check.name}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[red]✗[/red] {check.name}: {len(check.violations)} violation(s)", soft_wrap=True)
            for violation in check.violations[:SHOWN_VIOLATIONS]:
                console.print(f"    [dim]{violation}[/dim]", highlight=False, soft_wrap=True)
    violating = summary["verdict"]["violatingOrders"]
    if violating:
        console.print(
            f"[red]{len(violating)} order(s) break an invariant[/red]; to see what happened to each:"
        )
        for entry in violating[:SHOWN_VIOLATIONS]:
            console.print(f"    {entry['trace']}", highlight=False, soft_wrap=True)
    for entry in summary["refusedOrders"][:SHOWN_VIOLATIONS]:
        console.print(f"[red]✗[/red] refused: order {entry['index']} — {entry['reason']}", highlight=False)


def chaos(
    state_machine: StateMachineArgument = None,
    executions: Annotated[int, typer.Option(help="Any stack: how many executions to run.")] = 200,
    inputs: Annotated[
        str | None,
        typer.Option(
            help="Any stack: the executions' inputs, a JSON-lines file (taken in turn) or "
            "module:function (called with the execution's index)."
        ),
    ] = None,
    invariants: Annotated[
        list[str] | None,
        typer.Option(
            "--invariants",
            help="Any stack: module:function checks of your own; each gets the "
            "run (stack clients, executions) and returns its violations. Repeatable.",
            show_default=False,
        ),
    ] = None,
    kinds: Annotated[
        str,
        typer.Option(help=f"Any stack: fault kinds drawn over the Lambda tasks: {', '.join(CHAOS_KINDS)}."),
    ] = ",".join(CHAOS_KINDS),
    fault_share: Annotated[
        float, typer.Option(help="Any stack: the share of executions given a fault.")
    ] = 0.6,
    orders: Annotated[int, typer.Option(help="The order demo: how many orders to place.")] = 300,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the plan (same seed, same orders and faults).")] = 1,
    faults: Annotated[
        str,
        typer.Option(
            help=f"Fault kinds to mix in, comma-separated: {', '.join(FAULT_KINDS)}; or all, or none. "
            "Orders beyond stock and over the card limit are always planned.",
        ),
    ] = "all",
    duplicate_requests: Annotated[
        float,
        typer.Option(
            help="Share of orders whose POST is sent twice with the same Idempotency-Key (after the "
            "first answer, or at the same time)."
        ),
    ] = 0.05,
    wait_seconds: Annotated[
        float, typer.Option(help="Seconds to wait, once all are placed, for every order to end.")
    ] = 300,
    json_output: JsonFlag = False,
) -> None:
    """Run many executions under random faults, wait until all is quiet, and check every invariant.

    Any stack (or the demo with --inputs): N executions of the state machine, a share given one fault on a Lambda task (scoped to that execution), judged by checks that need no code (every execution ended; after each Catch, a path `sandbox saga map` predicts ran; each injected fault shows in the history where it was injected) and by your --invariants. The order demo: orders placed through its API; the checker reads only what the system recorded (the tables, every saga execution and the history of each failed one, the outbox and its on-failure queue): every order terminal, one saga each (replays aside), nothing charged, reserved or shipped twice, every failed saga compensated in reverse order, stock conserved, every outbox record published or dead-lettered, no second order from a repeated POST, every order ended as its faults imply. Exit 1 on any violation, naming the orders, a trace command for each, and the command that plans the same run.
    """
    from sandbox.settings import Settings

    settings = Settings.load()
    if inputs is not None or state_machine is not None or invariants or not settings.is_demo:
        from sandbox.saga_chaos import SagaChaosConfig

        config_any = SagaChaosConfig(
            executions, concurrency, seed, tuple(k.strip() for k in kinds.split(",") if k.strip()),
            fault_share, wait_seconds,
        )  # fmt: skip
        _chaos_any_saga(settings, state_machine, inputs, invariants or [], config_any, json_output)
        return
    from sandbox.chaos import ChaosConfig, parse_fault_kinds, run_chaos
    from sandbox.stack import find_stack

    config = ChaosConfig(
        orders, concurrency, seed, parse_fault_kinds(faults), duplicate_requests, wait_seconds
    )
    config.validate()
    stack = find_stack(settings)
    with _progress(orders, json_output) as on_progress:
        report = run_chaos(stack, settings.region, config, on_progress)
    if json_output:
        print_json(report.as_dict())
    else:
        _print_report(report)
    if report.is_ok:
        return
    raise SandboxError(
        f"chaos: {report.reason()}",
        hint=f"the same run again: {config.command}; `sandbox trace ORDER_ID` shows what happened to an order",
    )


def _chaos_any_saga(
    settings: Settings,
    wanted: str | None,
    inputs: str | None,
    invariant_specs: list[str],
    config: SagaChaosConfig,
    json_output: bool,
) -> None:
    from sandbox.executions import resolve_state_machine
    from sandbox.saga_chaos import (
        ChaosContext,
        load_invariants,
        new_run_id,
        plan_saga_chaos,
        read_inputs,
        run_saga_chaos,
    )
    from sandbox.stack import find_stack
    from sandbox.trace.execution_reading import read_definition

    config.validate()
    if inputs is None:
        raise UsageError(
            "say where the executions' inputs come from: --inputs FILE.jsonl or --inputs module:function",
            hint="e.g. one JSON input per line in events/chaos.jsonl",
        )
    search = [settings.template_path.parent, Path.cwd()]
    stack = find_stack(settings)
    read = read_inputs(inputs, search, ChaosContext(stack, settings.region, dict(stack.outputs), ()))
    checks = load_invariants(invariant_specs, search)
    machine = resolve_state_machine(stack, settings.region, settings.stack_name, wanted)
    definition = read_definition(stack.client("stepfunctions", settings.region), machine.arn)
    if definition is None:
        raise SandboxError(f"cannot read the definition of {machine.label} from the engine")
    plan = plan_saga_chaos(definition, read, config, new_run_id())
    with _saga_progress(len(plan), json_output) as on_progress:
        report = run_saga_chaos(
            stack, settings.region, machine, definition, plan, config, checks, on_progress
        )
    if json_output:
        print_json({**report.to_json(), "executions": [e.to_json() for e in report.executions]})
    else:
        _print_saga_report(report)
    if not report.is_held:
        broken = sum(1 for check in report.checks if not check.is_held)
        raise SandboxError(
            f"chaos: {broken} check(s) did not hold", hint=f"the same run again: {report.rerun_command()}"
        )


@contextmanager
def _saga_progress(total: int, is_quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """One bar, named by the stage (starting, running, checking), on a terminal; nothing otherwise."""
    if is_quiet or not error_console.is_terminal:
        yield lambda _stage, _done, _total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    with Bars(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
              console=error_console, transient=True) as bars:  # fmt: skip
        task = bars.add_task("starting", total=total)
        yield lambda stage, done, of: bars.update(task, description=stage, completed=done, total=of)


def _print_saga_report(report: SagaChaosReport) -> None:
    from sandbox.bench import SHOWN_VIOLATIONS

    summary = report.to_json()
    table = facts_table()
    run = summary["run"]
    table.add_row(
        "run",
        f"{run['executions']} executions of {report.state_machine}, {run['concurrency']} clients, seed "
        f"{run['seed']}, kinds {', '.join(run['kinds'])}, {summary['planned']} given a fault",
    )
    table.add_row("ended", _counts(summary["statuses"]))
    table.add_row(
        "injected", ", ".join(f"{k} {n}" for k, n in sorted(summary["injected"].items())) or "nothing"
    )
    table.add_row("speed", f"{summary['elapsedSeconds']} s, {summary['executionsPerSecond']} executions/s")
    console.print(table, highlight=False)
    for check in report.checks:
        if check.is_held:
            console.print(f"[green]✓[/green] {check.name}", highlight=False, soft_wrap=True)
            continue
        console.print(f"[red]✗[/red] {check.name}: {len(check.violations)} violation(s)", soft_wrap=True)
        for violation in check.violations[:SHOWN_VIOLATIONS]:
            console.print(f"    [dim]{violation}[/dim]", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this command to the CLI."""
    app.command(
        epilog="Examples:  sandbox chaos    sandbox chaos --orders 2000 --seed 7    "
        "sandbox chaos --orders 100 --faults fail,flaky,replay --duplicate-requests 0.2 --json    "
        "sandbox chaos BookingSaga --inputs events/chaos.jsonl --invariants tests.invariants:trip_invariants "
        "--executions 300"
    )(project_command()(chaos))
