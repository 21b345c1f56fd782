"""`sandbox order` and `sandbox orders`: place an order and follow its saga; list recent ones."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import (
    EndpointOption,
    JsonFlag,
    ProfileOption,
    RegionOption,
    StageOption,
    Target,
    TargetOption,
    complete_step,
    project_command,
)
from cli.output import console, escape, format_step, print_json, styled, trace_command
from sandbox.errors import SandboxError, UsageError

# What an order runs (the stack, the order API, the saga's follower; boto3 only for the AWS
# target) loads in the command: `sandbox --help` and the other commands never pay for it.
if TYPE_CHECKING:
    from sandbox.orders import OrdersClient
    from sandbox.runs import OrderEvent, OrderRun
    from sandbox.stack import LocalStack


def orders_client(
    target: Target,
    local: LocalStack | None = None,
    *,
    stage: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    command: str = "order",
) -> OrdersClient:
    """The order API of the local stack, or of the AWS stack (requests signed when required)."""
    from sandbox.settings import Settings
    from sandbox.stack import find_stack, require_demo

    settings = Settings.load()
    require_demo(settings, command)
    if target is Target.local:
        from sandbox.orders import OrdersClient

        return OrdersClient((local or find_stack(settings)).api_url)
    from sandbox.aws import AwsSession, AwsTarget, aws_orders_client

    aws = AwsTarget.load(settings, stage=stage, region=region, profile=profile, endpoint_url=endpoint_url)
    return aws_orders_client(AwsSession(aws))


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
        str | None,
        typer.Option(
            help="Make this step fail for good: inventory, payment or shipping.", autocompletion=complete_step
        ),
    ] = None,
    flaky: Annotated[
        list[str] | None,
        typer.Option(
            help="STEP[:N]: the step's first N attempts (default 2) fail transiently.",
            autocompletion=complete_step,
        ),
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
        typer.Option(
            "--timeout",
            help="STEP: its first attempt outlives the Task's TimeoutSeconds.",
            autocompletion=complete_step,
        ),
    ] = None,
    hang: Annotated[
        str | None,
        typer.Option(
            help="STEP: every attempt outlives its timeout, then completes late; the saga compensates "
            "the step itself too (about 20 s).",
            autocompletion=complete_step,
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
    from cli.order_options import parse_faults, parse_item
    from sandbox.runs import DEFAULT_ITEMS, OrderRequest, run_order
    from sandbox.settings import Settings
    from sandbox.stack import find_stack, require_demo

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
    require_demo(settings, "order")
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
        document["traceCommand"] = trace_command(run.order_id)
    if json_output:
        print_json(document)
        if not run.is_as_expected:
            raise typer.Exit(code=1)
        return
    _print_order_run(run)
    if target is Target.local:  # traces read the local engine
        console.print(f"[dim]trace: {trace_command(run.order_id)}[/dim]", highlight=False)
    if not run.is_as_expected:
        raise SandboxError(
            f"order {run.order_id} ended {run.status} (expected {request.expected_status})",
            hint=(run.final or {}).get("failureReason") or "see its steps above",
        )


REPLAYED = "replayed: the first response for this key (nothing new was placed)"


def _print_order_event(event: OrderEvent) -> None:
    from sandbox.runs import StepFinished

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
    client = orders_client(
        target, stage=stage, region=region, profile=profile, endpoint_url=endpoint_url, command="orders"
    )
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


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command(
        epilog="Examples:  sandbox order    sandbox order --fail payment    "
        "sandbox order --flaky shipping:2 --item grinder:1    sandbox order --idempotency-key k1 --json",
    )(project_command()(order))
    app.command(
        epilog="Examples:  sandbox orders    sandbox orders --status FAILED --limit 5    "
        "sandbox orders --target aws --json"
    )(project_command()(orders))
