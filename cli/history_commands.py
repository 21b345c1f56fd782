"""`sandbox history`: save what an execution did, diff it against a saved one or another execution, show it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import (
    EndpointOption,
    JsonFlag,
    ProfileOption,
    RegionOption,
    StageOption,
    Target,
    project_command,
)
from cli.output import console, escape, print_json
from sandbox.errors import UsageError

# The readers (and boto3 under them) load in the command that reads an execution.
if TYPE_CHECKING:
    from sandbox.histories import HistoryReader

history_app = typer.Typer(
    help="Saga histories as test artifacts: save what an execution did (states, attempts, errors, "
    "Catches, compensations, data; no times or ids), diff a later run against it.",
    no_args_is_help=True,
)

MaskOption = Annotated[
    list[str] | None,
    typer.Option(
        "--mask",
        help="A JSON path of the data to hide as <masked> (e.g. '$.order.id', '$..trackingId'); repeatable. "
        "Default: the saved history's own masks.",
        show_default=False,
    ),
]
HistoryTargetOption = Annotated[
    Target, typer.Option("--target", help="Read executions from the local engine's stack, or from AWS.")
]


class _Readers:
    """The executions' reader, made on first use: a saved history alone needs no engine."""

    def __init__(
        self, target: Target, stage: str | None, region: str | None, profile: str | None, endpoint: str | None
    ):
        from sandbox.histories import histories_folder
        from sandbox.settings import Settings

        self.settings = Settings.load()
        self.folder = histories_folder(self.settings.project_dir)
        self._options = (target, stage, region, profile, endpoint)
        self._reader: HistoryReader | None = None

    @property
    def reader(self) -> HistoryReader:
        if self._reader is None:
            target, stage, region, profile, endpoint = self._options
            if target is Target.aws:
                from sandbox.aws import AwsTarget
                from sandbox.histories import AwsHistories

                aws = AwsTarget.load(self.settings, stage=stage, region=region, profile=profile,
                                     endpoint_url=endpoint)  # fmt: skip
                self._reader = AwsHistories(aws)
            else:
                from sandbox.histories import LocalHistories
                from sandbox.stack import find_stack

                settings = self.settings
                self._reader = LocalHistories(find_stack(settings), settings.region, settings.stack_name)
        return self._reader

    def saved(self, ref: str) -> tuple[dict[str, Any], str] | None:
        """A saved history (a name in the project's histories/, or a file), with what to call it."""
        from sandbox.histories import HistoryNotFoundError, load_history, saved_history_file

        path = saved_history_file(ref, self.folder)
        if path is not None:
            return load_history(path), str(path)
        if ref.endswith(".json"):
            raise HistoryNotFoundError(
                f"no saved history {ref}", hint="save one with `sandbox history save EXECUTION --output FILE`"
            )
        return None

    def execution(self, ref: str, masks: list[str]) -> tuple[dict[str, Any], str]:
        """An execution's history (its ARN or name), with what to call it."""
        from sandbox.executions import ExecutionNotFoundError, is_execution_arn
        from sandbox.histories import HistoryNotFoundError

        try:
            arn = self.reader.find(ref)
        except ExecutionNotFoundError as error:
            if is_execution_arn(ref):
                raise
            raise HistoryNotFoundError(
                f"{ref!r} is neither a saved history ({self.folder}/{ref}.json) nor an execution of "
                f"{self.reader.where}",
                hint="`sandbox history show NAME` needs a saved NAME; an execution is named by its name or ARN",
            ) from error
        return self.reader.read(arn, masks), f"execution {arn}"

    def document(self, ref: str, masks: list[str]) -> tuple[dict[str, Any], str]:
        return self.saved(ref) or self.execution(ref, masks)


def _readers(
    target: Target, stage: str | None, region: str | None, profile: str | None, endpoint: str | None
) -> _Readers:
    if target is Target.local and any(value is not None for value in (stage, region, profile, endpoint)):
        raise UsageError(
            "--stage, --region, --profile and --endpoint-url choose an AWS account", hint="add --target aws"
        )
    return _Readers(target, stage, region, profile, endpoint)


def save(
    execution: Annotated[str, typer.Argument(help="The execution: its ARN or its name.", show_default=False)],
    name: Annotated[
        str | None,
        typer.Option("--as", help="Save it as the project's histories/NAME.json.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Save it to this file instead.", show_default=False)
    ] = None,
    mask: MaskOption = None,
    target: HistoryTargetOption = Target.local,
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Save an execution's normalized history: states, attempts, errors, Catches, compensations, data, faults.

    ARNs, ids, the execution's name and timestamps become placeholders, so a later run of the same scenario (here or on AWS) saves the same file; `sandbox history diff NAME EXECUTION` compares them.
    """
    from sandbox.histories import check_masks, history_path, save_history

    if (name is None) == (output is None):
        raise UsageError("give --as NAME or --output FILE (one of them)", hint="e.g. --as happy-path")
    masks = check_masks(mask or [])
    readers = _readers(target, stage, region, profile, endpoint_url)
    path = output if output is not None else history_path(readers.folder, str(name))
    previous = readers.saved(str(path)) if path.is_file() else None
    document, label = readers.execution(execution, masks)
    save_history(document, path)
    is_changed = previous is None or previous[0] != document
    if json_output:
        print_json({"path": str(path), "source": label, "isChanged": is_changed, "history": document})
        return
    verb = "saved" if previous is None else ("replaced" if is_changed else "unchanged:")
    console.print(f"{verb} {escape(str(path))} ({escape(label)})", highlight=False, soft_wrap=True)


def diff(
    expected: Annotated[
        str,
        typer.Argument(
            help="The expected history: a saved NAME, a history file, or an execution.", show_default=False
        ),
    ],
    actual: Annotated[
        str,
        typer.Argument(
            help="The actual one: an execution (ARN or name), a saved NAME or a file.", show_default=False
        ),
    ],
    mask: MaskOption = None,
    target: HistoryTargetOption = Target.local,
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Compare two histories: a path that diverged, an extra retry, an error or an output that changed.

    Exit code 0 when they are the same, 1 when they differ.
    """
    from sandbox.histories import check_masks, diff_histories, diff_notes, render_diff

    readers = _readers(target, stage, region, profile, endpoint_url)
    saved = {ref: readers.saved(ref) for ref in (expected, actual)}
    # Executions are read with the masks given, else with those the saved side was saved with.
    masks = check_masks(
        mask if mask is not None else next((list(s[0].get("masks") or []) for s in saved.values() if s), [])
    )
    expected_doc, expected_label = saved[expected] or readers.execution(expected, masks)
    actual_doc, actual_label = saved[actual] or readers.execution(actual, masks)
    differences = diff_histories(expected_doc, actual_doc)
    notes = diff_notes(expected_doc, actual_doc)
    if json_output:
        print_json({
            "expected": expected_label, "actual": actual_label, "isSame": not differences,
            "differences": [difference.to_json() for difference in differences], "notes": notes,
        })  # fmt: skip
    else:
        text = render_diff(differences, expected=expected_label, actual=actual_label, notes=notes)
        style = "green" if not differences else "red"
        for line in text.splitlines():
            is_marked = line.startswith("  ✗") or line == "the histories are the same"
            shown = f"[{style}]{escape(line)}[/{style}]" if is_marked else escape(line)
            console.print(shown, highlight=False, soft_wrap=True)
    if differences:
        raise typer.Exit(1)


def show(
    ref: Annotated[
        str,
        typer.Argument(
            help="A saved NAME, a history file, or an execution (ARN or name).", show_default=False
        ),
    ],
    mask: MaskOption = None,
    target: HistoryTargetOption = Target.local,
    stage: StageOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Print a saved history, or an execution's history as `sandbox history save` would save it."""
    from sandbox.histories import check_masks, render_history

    readers = _readers(target, stage, region, profile, endpoint_url)
    document, label = readers.document(ref, check_masks(mask or []))
    if json_output:
        print_json(document)
        return
    console.print(f"[dim]{escape(label)}[/dim]", highlight=False, soft_wrap=True)
    console.print(escape(render_history(document)), highlight=False, soft_wrap=True, end="")


def _command(function: Callable[..., None]) -> Callable[..., None]:
    return project_command()(function)


def register(app: typer.Typer) -> None:
    """Add the `history` commands to the CLI."""
    history_app.command(
        "save",
        epilog="Examples:  sandbox history save ORDER_ID --as happy    "
        "sandbox history save try-1 --as declined --mask '$..trackingId'    "
        "sandbox history save arn:aws:states:...:execution:... --as happy-aws --target aws --region eu-west-1    "
        "sandbox history save try-1 --output /tmp/try-1.json",
    )(_command(save))
    history_app.command(
        "diff",
        epilog="Examples:  sandbox history diff happy ORDER_ID    sandbox history diff try-1 try-2    "
        "sandbox history diff happy happy-aws    sandbox history diff happy /tmp/try-1.json --json",
    )(_command(diff))
    history_app.command(
        "show", epilog="Examples:  sandbox history show happy    sandbox history show ORDER_ID --json"
    )(_command(show))
    app.add_typer(history_app, name="history")
