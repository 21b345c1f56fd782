"""`sandbox chaos`: many orders under random faults, then a checker that proves nothing was lost or done twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from cli.options import JsonFlag, project_command
from cli.output import console, error_console, print_each_stage, print_json, styled
from sandbox.bench import SHOWN_VIOLATIONS, BenchProgress, Progress
from sandbox.chaos import FAULT_KINDS, ChaosConfig, ChaosReport, parse_fault_kinds, run_chaos
from sandbox.errors import SandboxError
from sandbox.settings import Settings
from sandbox.stack import find_stack, require_demo


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
    summary = report.as_dict()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
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
        f"{resources['peakRssMb']:.0f} MB, peak {resources['peakWorkers']} workers"
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
    orders: Annotated[int, typer.Option(help="How many orders to place.")] = 300,
    concurrency: Annotated[int, typer.Option(help="Concurrent API clients.")] = 8,
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
    """Place many orders under random faults, wait until all is quiet, and check every invariant.

    The checker reads only what the system recorded (the tables, every saga execution and the history of each failed one, the outbox and its on-failure queue): every order terminal, one saga each (replays aside), nothing charged, reserved or shipped twice, every failed saga compensated in reverse order, stock conserved, every outbox record published or dead-lettered, no second order from a repeated POST, every order ended as its faults imply. Exit 1 on any violation, naming the orders, a trace command for each, and the command that plans the same run.
    """
    config = ChaosConfig(
        orders, concurrency, seed, parse_fault_kinds(faults), duplicate_requests, wait_seconds
    )
    config.validate()
    settings = Settings.load()
    require_demo(settings, "chaos")
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


def register(app: typer.Typer) -> None:
    """Add this command to the CLI."""
    app.command(
        epilog="Examples:  sandbox chaos    sandbox chaos --orders 2000 --seed 7    "
        "sandbox chaos --orders 100 --faults fail,flaky,replay --duplicate-requests 0.2 --json"
    )(project_command()(chaos))
