"""`sandbox faults`: break any step of any saga at the Lambda invoke boundary, without touching its code."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import JsonFlag, project_command
from cli.output import console, error_console, print_json
from sandbox.errors import UsageError
from sandbox.fault_kinds import RULE_KINDS as KINDS

if TYPE_CHECKING:
    from sandbox.faults import FaultBook, FaultSpec

faults_app = typer.Typer(
    help="Break any saga on purpose: fault rules at the Lambda invoke boundary (the engine applies "
    "them; your code is unchanged). Kinds: " + ", ".join(KINDS) + ".",
    no_args_is_help=True,
)
_DURATION = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match["number"]) <= 0:
        raise UsageError(f"--duration {text!r}: expected a positive number of seconds, or 30s, 5m, 1h")
    return float(match["number"]) * _UNIT_SECONDS[match["unit"] or "s"]


def _print_rules(rules: list[dict[str, Any]], verb: str) -> None:
    from sandbox.faults import describe_rule

    for rule in rules:
        console.print(f"[green]✓[/green] {verb} {describe_rule(rule)}", highlight=False, soft_wrap=True)


def _add_to_stack(specs: list[FaultSpec]) -> list[dict[str, Any]]:
    """Add the rules to the running stack's engine (all of them, or none when one is wrong)."""
    from sandbox.faults import add_faults
    from sandbox.settings import Settings
    from sandbox.stack import find_stack

    settings = Settings.load()
    return add_faults(find_stack(settings), settings.region, settings.stack_name, specs)


def _fault_book() -> FaultBook:
    """The running stack's fault rules and injections, as the engine keeps them."""
    from sandbox.faults import fault_book
    from sandbox.settings import Settings
    from sandbox.stack import find_stack

    return fault_book(find_stack(Settings.load()))


def add(
    target: Annotated[
        str,
        typer.Argument(
            help="What to break: a Task state's name (of any state machine of the stack), a function's "
            "logical id or name, or a stream mapping's logical id or UUID.",
            show_default=False,
        ),
    ],
    kind: Annotated[str, typer.Argument(help=f"One of {', '.join(KINDS)}.", show_default=False)],
    attempts: Annotated[
        str,
        typer.Option(help="Which attempts: all, N, N-M or N- (a Task's retries, a record's redeliveries)."),
    ] = "all",
    execution: Annotated[str | None, typer.Option(help="Only this execution (by name).")] = None,
    record: Annotated[
        str | None,
        typer.Option(
            help="Stream deliveries only: records whose key (or a #-separated part of it) is this text."
        ),
    ] = None,
    percent: Annotated[
        float, typer.Option(min=0.001, max=100, help="Fire on this share of invocations.")
    ] = 100,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the percentage's draws (repeatable runs).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Expire after this long (90, 30s, 5m, 1h); default: until cleared.")
    ] = None,
    error: Annotated[
        str | None, typer.Option(help="The error's name, e.g. Lambda.ServiceException (default by kind).")
    ] = None,
    cause: Annotated[str | None, typer.Option(help="The error's message.")] = None,
    delay_ms: Annotated[
        int | None, typer.Option(min=1, help="delay / delayed-delivery: milliseconds.")
    ] = None,
    status: Annotated[
        int | None, typer.Option(min=100, max=599, help="http-response: the status code.")
    ] = None,
    run_handler: Annotated[
        bool, typer.Option(help="http-response: run the handler, then replace its answer.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Add a fault rule: the next invocations it selects are broken the way KIND says.

    error: fails before the handler runs. error-after: the handler runs and its effect lands, then
    the caller gets an error. delay: starts late. timeout: outlives the Task's TimeoutSeconds (or the
    function's Timeout), then completes late. throttle: Lambda.TooManyRequestsException.
    http-response: an API integration answers --status. crash: the worker dies after the handler ran.
    cold-start: runs in a new execution environment started from nothing (the whole cold start).
    Stream mappings: duplicate-delivery, delayed-delivery, poison (an unreadable record).
    """
    from sandbox.faults import Attempts, FaultSpec

    spec = FaultSpec(
        target=target,
        kind=kind,
        attempts=Attempts.parse(attempts),
        execution=execution,
        record=record,
        percent=percent,
        seed=seed,
        duration_seconds=parse_duration(duration) if duration else None,
        error=error,
        cause=cause,
        delay_ms=delay_ms,
        status=status,
        run_handler=run_handler,
    )
    added = _add_to_stack([spec])
    if json_output:
        print_json({"rules": added})
        return
    _print_rules(added, "added")


def load(
    plan: Annotated[
        Path, typer.Argument(help="A fault plan: YAML or JSON, `faults: [{target, kind, ...}]`.")
    ],
    json_output: JsonFlag = False,
) -> None:
    """Add every rule of a fault plan file (all of them, or none when one is wrong)."""
    from sandbox.faults import read_plan

    added = _add_to_stack(read_plan(plan))
    if json_output:
        print_json({"rules": added})
        return
    _print_rules(added, "added")


def list_rules(json_output: JsonFlag = False) -> None:
    """List the fault rules in force, with how often each matched and fired."""
    from sandbox.faults import describe_rule

    rules = _fault_book().listed()
    if json_output:
        print_json({"rules": rules})
        return
    if not rules:
        console.print("no fault rules: `sandbox faults add TARGET KIND` breaks a step")
        return
    for rule in rules:
        console.print(
            f"{describe_rule(rule)}  [dim](matched {rule['matched']}, injected {rule['injected']})[/dim]",
            highlight=False,
            soft_wrap=True,
        )


def clear(
    rule_id: Annotated[str | None, typer.Argument(help="One rule's id (default: every rule).")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Remove one fault rule, or all of them."""
    cleared = _fault_book().clear(rule_id)
    if json_output:
        print_json({"cleared": cleared})
        return
    console.print(f"[green]✓[/green] cleared {cleared} fault rule{'s' if cleared != 1 else ''}")


def injections(
    execution: Annotated[str | None, typer.Option(help="Only this execution's (by name).")] = None,
    json_output: JsonFlag = False,
) -> None:
    """List the faults the engine injected (until the rules are cleared)."""
    made = _fault_book().injections(execution)
    if json_output:
        print_json({"injections": made})
        return
    if not made:
        console.print("no fault injected yet")
    for entry in made:
        where = entry.get("state") or entry.get("function")
        scope = f" in {entry['execution']}" if entry.get("execution") else ""
        console.print(
            f"rule {entry['rule']}: {entry['kind']} on {where}{scope}, attempt {entry['attempt']}",
            highlight=False,
            soft_wrap=True,
        )


def import_template(
    fis_template: Annotated[
        Path,
        typer.Argument(
            help="An AWS FIS experiment template (JSON or YAML), as `aws fis` takes or returns it."
        ),
    ],
    json_output: JsonFlag = False,
) -> None:
    """Run the aws:lambda:* actions of an AWS FIS experiment template on the local engine, as fault rules."""
    from sandbox.fis import read_fis

    imported = read_fis(fis_template)
    if not imported.specs:
        raise UsageError(
            f"{fis_template} holds no Lambda action the sandbox can run",
            hint="; ".join(imported.skipped) or "FIS's Lambda actions: aws:lambda:invocation-*",
        )
    added = _add_to_stack(imported.specs)
    if json_output:
        print_json({"rules": added, "skipped": imported.skipped, "notes": imported.notes})
        return
    _print_rules(added, "added")
    for line in imported.skipped:
        console.print(f"[yellow]skipped[/yellow] {line}", highlight=False, soft_wrap=True)
    for line in imported.notes:
        console.print(f"[dim]note: {line}[/dim]", highlight=False, soft_wrap=True)


def export(
    fis: Annotated[
        bool, typer.Option("--fis", help="Write an AWS FIS experiment template (the only format).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it here (default: stdout).")
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", help="Export this fault plan file instead of the engine's rules.")
    ] = None,
    role_arn: Annotated[
        str | None, typer.Option(help="The experiment's IAM role (default: a placeholder).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Write the rules AWS FIS can express as an FIS experiment template, and say which it cannot.

    FIS targets functions by their CloudFormation tags (stack name and logical id), so the template
    runs against the same template deployed to AWS. It cannot express throttle, timeout, crash, the
    stream kinds, or a rule scoped to attempts, one execution or one record: those are listed.
    """
    if not fis:
        raise UsageError("say which format: `sandbox faults export --fis` (AWS FIS is the one there is)")
    from sandbox.faults import StackTargets, fault_book, read_plan, spec_of_rule
    from sandbox.fis import export_fis, stack_state_functions
    from sandbox.settings import Settings
    from sandbox.stack import find_stack

    settings = Settings.load()
    stack = find_stack(settings)
    specs = read_plan(plan) if plan else [spec_of_rule(rule) for rule in fault_book(stack).listed()]
    if not specs:
        raise UsageError(
            "there are no fault rules to export", hint="add some with `sandbox faults add`, or pass --plan"
        )
    targets = StackTargets.of_stack(stack, settings.region, settings.stack_name)
    exported = export_fis(
        specs, stack_name=settings.stack_name, role_arn=role_arn, stack_targets=targets,
        state_functions=stack_state_functions(stack, settings.region, settings.stack_name, targets),
    )  # fmt: skip
    text = json.dumps(exported.template, indent=2) + "\n"
    if output is not None:
        output.write_text(text)
    if json_output:
        print_json(
            {"template": exported.template, "unsupported": exported.unsupported, "notes": exported.notes}
        )
        return
    if output is None:
        sys.stdout.write(text)
    else:
        error_console.print(f"[green]✓[/green] wrote {output}", highlight=False)
    for line in exported.unsupported:
        error_console.print(
            f"[yellow]not expressible in FIS[/yellow] {line}", highlight=False, soft_wrap=True
        )
    for line in exported.notes:
        error_console.print(f"[dim]note: {line}[/dim]", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `faults` commands to the CLI."""
    faults_app.command(
        "add",
        epilog="Examples:  sandbox faults add ChargePayment error    "
        "sandbox faults add ChargePayment error --attempts 1-2 --error Lambda.ServiceException    "
        "sandbox faults add PaymentFunction timeout --execution order-42    "
        "sandbox faults add OutboxPublisherFunction duplicate-delivery --duration 5m",
    )(project_command()(add))
    faults_app.command("load", epilog="Example:  sandbox faults load faults.yaml")(project_command()(load))
    faults_app.command("list", epilog="Examples:  sandbox faults list    sandbox faults list --json")(
        project_command()(list_rules)
    )
    faults_app.command("clear", epilog="Examples:  sandbox faults clear    sandbox faults clear f3")(
        project_command()(clear)
    )
    faults_app.command(
        "injections",
        epilog="Examples:  sandbox faults injections    sandbox faults injections --execution try-1",
    )(project_command()(injections))
    faults_app.command("import", epilog="Example:  sandbox faults import fis-experiment.json")(
        project_command()(import_template)
    )
    faults_app.command(
        "export",
        epilog="Examples:  sandbox faults export --fis    sandbox faults export --fis --output experiment.json    "
        "sandbox faults export --fis --plan faults.yaml",
    )(project_command()(export))
    app.add_typer(faults_app, name="faults")
