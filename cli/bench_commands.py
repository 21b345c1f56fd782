"""`sandbox bench`: many orders against the local stack, what they cost the engine, and a verdict."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import JsonFlag, project_command
from cli.output import console, error_console, facts_table, print_each_stage, print_json, styled
from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from sandbox.bench import BenchProgress, BenchReport, Check


class Mix(StrEnum):
    happy = "happy"
    business = "business"
    faults = "faults"


@contextmanager
def _progress_bar(total: int, is_quiet: bool) -> Iterator[Any]:
    """A progress callback: a bar on a terminal's stderr, a few dim lines elsewhere, nothing under --json."""
    if is_quiet:
        yield lambda _: None
        return
    if not error_console.is_terminal:
        yield print_each_stage(lambda progress: f"{progress.stage} {progress.total} orders")
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=error_console, transient=True) as bar:
        accepted = bar.add_task("accepted", total=total)
        terminal = bar.add_task("terminal", total=total)

        def update(progress: BenchProgress) -> None:
            bar.update(accepted, completed=progress.accepted + progress.refused)
            bar.update(terminal, completed=progress.terminal, total=total - progress.refused)

        yield update


def _subjects(check: Check) -> str:
    """What a check found, when it lists it: " (2: id1, id2)"."""
    if not check.subjects:
        return ""
    from sandbox.bench import SHOWN_VIOLATIONS

    shown = ", ".join(check.subjects[:SHOWN_VIOLATIONS])
    more = ", …" if len(check.subjects) > SHOWN_VIOLATIONS else ""
    return f" [dim]({len(check.subjects)}: {shown}{more})[/dim]"


def _print_report(report: BenchReport, summary: dict[str, Any]) -> None:
    from sandbox.bench import SHOWN_VIOLATIONS

    table = facts_table()
    run = summary["run"]
    rate = f", {run['rate']:g}/s" if run["rate"] else ""
    table.add_row(
        "run",
        f"{run['orders']} orders, {run['concurrency']} clients{rate}, mix {run['mix']}, seed {run['seed']} "
        f"(customer {run['customerId']})",
    )
    if summary["plan"]["topUps"]:
        table.add_row("stock top-up", ", ".join(f"{p} +{n}" for p, n in summary["plan"]["topUps"].items()))
    refused = f", [red]{summary['refused']} refused[/red]" if summary["refused"] else ""
    throughput = summary["throughput"]
    table.add_row(
        "throughput",
        f"{summary['accepted']} accepted{refused}: {throughput['acceptedPerSecond']} accepted/s, "
        f"{throughput['completedPerSecond']} terminal/s ({throughput['totalSeconds']} s in all)",
    )
    latency = summary["latencyMs"]
    if latency:
        table.add_row(
            "POST → terminal",
            f"p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms, p99 {latency['p99']:.0f} ms, "
            f"max {latency['max']:.0f} ms",
        )
    table.add_row(
        "outcomes", ", ".join(f"{styled(s)} {n}" for s, n in sorted(summary["statusCounts"].items()))
    )
    if summary["failureReasons"]:
        table.add_row(
            "failed by", ", ".join(f"{r} {n}" for r, n in sorted(summary["failureReasons"].items()))
        )
    resources = summary["resources"]
    if resources:
        table.add_row(
            "engine + workers",
            f"{resources['cpuSecondsPerOrder']:.3f} CPU s/order ({resources['cpuSeconds']} s), "
            f"peak RSS {resources['peakRssMb']:.0f} MB{_pss(resources)}, peak {resources['peakWorkers']} processes "
            f"under the engine ({resources['workersBefore']} before: workers and their parents)",
        )
    else:
        table.add_row("engine + workers", summary["resourcesNote"] or "not measured")
    _add_calls(table, summary["callsPerOrder"])
    console.print(table, highlight=False)
    for check in report.verdict.checks:
        if check.skipped:
            console.print(f"[dim]– {check.name}: skipped ({check.skipped})[/dim]")
        elif check.holds:
            console.print(f"[green]✓[/green] {check.name}{_subjects(check)}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[red]✗[/red] {check.name}: {len(check.violations)} violation(s)")
            for violation in check.violations[:SHOWN_VIOLATIONS]:
                console.print(f"    [dim]{violation}[/dim]", highlight=False, soft_wrap=True)
    if not report.unexpected:
        console.print("[green]✓[/green] none failed that was not meant to")
        return
    console.print(f"[red]✗[/red] {len(report.unexpected)} order(s) ended other than planned")
    for entry in summary["unexpected"][:SHOWN_VIOLATIONS]:
        console.print(
            f"    {entry['orderId'] or '(refused)'}  {entry['kind']}: expected {entry['expected']}, "
            f"got {entry['actual']}" + (f" — {entry['reason']}" if entry["reason"] else ""),
            highlight=False,
            soft_wrap=True,
        )


def _add_calls(table: Any, calls: dict[str, Any] | None) -> None:
    """Rows of what an order asked of the engine: calls per order by service, then by operation."""
    if not calls:
        table.add_row("calls/order", "[dim]not counted (the engine has no calls route)[/dim]")
        return
    table.add_row(
        "calls/order",
        f"{calls['calls']:g} AWS API calls, {calls['invocations']:g} Lambda invocations "
        f"(over {calls['orders']} orders)",
    )
    for service, per_order in calls["byService"].items():
        operations = ", ".join(
            f"{entry['operation']} {entry['perOrder']:g}"
            for entry in calls["byOperation"]
            if entry["service"] == service
        )
        table.add_row(f"  {service}", f"{per_order:g}: {operations}")
    functions = ", ".join(f"{entry['function']} {entry['perOrder']:g}" for entry in calls["byFunction"])
    if functions:
        table.add_row("  invocations", functions)


def bench(
    orders: Annotated[int, typer.Option(help="How many orders to place.")] = 100,
    concurrency: Annotated[int, typer.Option(help="Concurrent API clients.")] = 4,
    rate: Annotated[
        float | None,
        typer.Option(help="Orders per second for all clients together.", show_default="as fast as they go"),
    ] = None,
    mix: Annotated[
        Mix,
        typer.Option(
            help="happy: ordinary orders; business: a fifth fail for business reasons (out of stock, "
            "card declined); faults: that, another fifth carry --fail or --flaky faults, and one in a "
            "hundred (at least one from 20 orders) a --poison record, which ends in the on-failure queue.",
        ),
    ] = Mix.happy,
    seed: Annotated[int, typer.Option(help="Seed of the order plan (same seed, same orders).")] = 1,
    wait_seconds: Annotated[
        float, typer.Option(help="Seconds to wait, once all are placed, for every order to end.")
    ] = 120,
    json_output: JsonFlag = False,
) -> None:
    """Place many orders on the local stack at once; report throughput, latency, engine cost, a verdict.

    Terminal statuses are read from the orders table, never through the API (which would load the engine being measured). Exit 0 when the tables show a consistent end state and no order ended other than planned.
    """
    from sandbox.bench import BenchConfig, run_bench
    from sandbox.settings import Settings
    from sandbox.stack import find_stack, require_demo

    config = BenchConfig(orders, concurrency, rate, mix.value, seed, wait_seconds)
    config.validate()
    settings = Settings.load()
    require_demo(settings, "bench")
    stack = find_stack(settings)
    with _progress_bar(orders, json_output) as on_progress:
        report = run_bench(stack, settings.region, config, on_progress)
    summary = report.as_dict()
    if json_output:
        print_json(summary)
    else:
        _print_report(report, summary)
    if not report.is_ok:
        raise SandboxError(
            f"bench: {report.reason()}",
            hint="the lines above name the orders; `sandbox trace ORDER_ID` shows what happened to one",
        )


def register(app: typer.Typer) -> None:
    """Add this command to the CLI."""
    app.command(
        epilog="Examples:  sandbox bench    sandbox bench --orders 300 --concurrency 8 --mix faults    "
        "sandbox bench --orders 100 --rate 20 --seed 7 --json"
    )(project_command()(bench))


def _pss(resources: dict[str, Any]) -> str:
    """`` (PSS 420 MB, 180 MB after)``: what the tree costs the machine, shared pages split; '' without."""
    if resources.get("peakPssMb") is None:
        return ""
    after = f", {resources['pssAfterMb']:.0f} MB after" if resources.get("pssAfterMb") is not None else ""
    return f" (PSS {resources['peakPssMb']:.0f} MB{after})"
