"""`sandbox dlq` and `sandbox reset`: inspect what failed, send it back, start clean."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.options import JsonFlag, Target, project_command
from cli.output import console, error_console, print_json, styled
from sandbox.errors import UsageError


def dlq(
    redrive_letters: Annotated[
        bool,
        typer.Option(
            "--redrive",
            help="Repair each unpublished record from its order and send it back to the publisher; "
            "safe to run again.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List the outbox records the publisher gave up on (the on-failure queue), or redrive them."""
    from sandbox.dlq import list_dead_letters, redrive
    from sandbox.settings import Settings
    from sandbox.stack import find_stack, physical_id, require_demo

    settings = Settings.load()
    require_demo(settings, "dlq")
    stack = find_stack(settings)
    if redrive_letters:
        publisher = physical_id(stack, settings.region, settings.stack_name, "OutboxPublisherFunction")
        results = redrive(stack, settings.region, publisher)
        if json_output:
            print_json({"redriven": results})
            return
        if not results:
            console.print("the on-failure queue is empty; nothing to redrive")
        for result in results:
            verdict = styled("SUCCEEDED") if result["redriven"] else styled("FAILED")
            done = [f"resent {', '.join(result['resent'])}"] if result["resent"] else []
            if result["alreadyPublished"]:
                done.append(f"already published, not resent: {', '.join(result['alreadyPublished'])}")
            console.print(
                f"{verdict} {'; '.join(done)}" + ("" if result["redriven"] else f" — {result['error']}")
            )
        return
    letters = [letter.as_dict() for letter in list_dead_letters(stack, settings.region)]
    if json_output:
        print_json({"deadLetters": letters})
        return
    if not letters:
        console.print("the on-failure queue is empty")
        return
    from rich.table import Table

    table = Table("failed at", "orders", "reason", "function error")
    for letter in letters:
        table.add_row(
            letter["failedAt"], ", ".join(letter["orderIds"]), letter["condition"], letter["functionError"]
        )
    console.print(table)
    console.print("[dim]`sandbox dlq --redrive` repairs each record from its order and sends it back[/dim]")


def reset(
    target: Annotated[Target, typer.Option(help="Only local: reset never runs against AWS.")] = Target.local,
    json_output: JsonFlag = False,
) -> None:
    """Empty the tables and queues, and reseed the inventory, without redeploying."""
    if target is not Target.local:
        raise UsageError(
            "reset wipes data and never runs against AWS", hint="use `sandbox destroy --target aws`"
        )
    from sandbox.engine import locked_state_dir
    from sandbox.settings import Settings
    from sandbox.stack import find_stack, require_demo, reset_stack

    settings = Settings.load()
    require_demo(settings, "reset")

    def say_waiting(line: str) -> None:
        error_console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)

    with locked_state_dir(settings, on_wait=say_waiting):  # never while an `up` deploys or a `down` stops
        summary = reset_stack(find_stack(settings), settings.region)
    if json_output:
        print_json(summary)
        return
    console.print(describe_reset(summary), highlight=False, soft_wrap=True)


def describe_reset(summary: dict[str, Any]) -> str:
    """What `reset` did, with the items deleted from each table (an order is two items in its table)."""
    tables = summary["deletedItems"]
    deleted = ", ".join(f"{name.lower()}: {count}" for name, count in tables.items())
    return (
        f"[green]✓[/green] emptied {len(tables)} tables (items deleted per table — {deleted}), "
        f"purged {len(summary['purgedQueues'])} queues, reseeded {summary['seededProducts']} products"
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(epilog="Examples:  sandbox dlq    sandbox dlq --redrive    sandbox dlq --json")(
        project_command()(dlq)
    )
    app.command(epilog="Example:  sandbox reset")(project_command()(reset))
