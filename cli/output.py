"""Output for people (rich) and scripts (--json), and the CLI's one error boundary.

rich loads on the first line printed for people: a command that prints JSON, and `--help` until
Typer draws it, never pay for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# Without a terminal nothing is wrapped or cut: a line is as long as what it says.
PLAIN_WIDTH = 10_000


def make_console(*, stderr: bool = False) -> Console:
    """A console for people; without a terminal (make, CI logs, pipes) it never wraps a line.

    On a terminal rich wraps to its width as usual. Elsewhere rich would wrap at 80 columns, so
    text is printed whole (soft wrap) and tables get the width their cells need, unless
    ``COLUMNS`` asks for a width.
    """
    from rich.console import Console

    chosen = Console(stderr=stderr)
    if chosen.is_terminal:
        return chosen
    return Console(stderr=stderr, soft_wrap=True, width=None if "COLUMNS" in os.environ else PLAIN_WIDTH)


class _FirstUse:
    """Stands for a console until it is used, then hands everything to the one made then."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            self._console = make_console(stderr=self._stderr)
        return getattr(self._console, name)


console = cast("Console", _FirstUse(stderr=False))
error_console = cast("Console", _FirstUse(stderr=True))


def escape(text: str) -> str:
    """``text`` with rich's markup escaped, so it prints as it is."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


STATUS_STYLES = {
    "SUCCEEDED": "green",
    "COMPLETED": "green",
    "RUNNING": "yellow",
    "RETRYING": "yellow",
    "PENDING": "yellow",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "ABORTED": "red",
}


def print_json(data: Any) -> None:
    """One JSON document on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def styled(status: str) -> str:
    style = STATUS_STYLES.get(status, "white")
    return f"[{style}]{status}[/{style}]"


def report_error(error: SandboxError) -> None:
    """A red one-line message, a hint at the fix, and the details that help."""
    error_console.print(f"[bold red]error:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
    if error.hint:
        error_console.print(f"[dim]hint:[/dim] {escape(error.hint)}", highlight=False, soft_wrap=True)
    if error.details:
        error_console.print(error.details, style="dim", highlight=False, markup=False)


def trace_command(order_id: str) -> str:
    """The command that prints an order's trace."""
    return f"sandbox trace {order_id}"


def format_step(step: dict[str, Any]) -> str:
    """One line of a saga timeline: marker, name, status, attempts, duration, errors."""
    name = f"{step['name']} (compensation)" if step.get("isCompensation") else step["name"]
    attempts = step.get("attempts", 0)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    duration = f"{step['durationMs']} ms" if step.get("durationMs") is not None else "…"
    marker = "↩" if step.get("isCompensation") else "→"
    status = step["status"]
    style = STATUS_STYLES.get(status, "white")
    counts = Counter(step.get("errors") or [])
    errors = ", ".join(f"{error} ×{count}" if count > 1 else error for error, count in counts.items())
    line = f"  {marker} {name:<34} [{style}]{status:<10}[/{style}] {tries:<11} {duration:>8}"
    return f"{line}  [dim]{errors}[/dim]" if errors else line


def print_key_values(rows: dict[str, Any]) -> None:
    """Aligned ``key  value`` lines, never wrapped, so URLs and ARNs copy whole."""
    width = max((len(key) for key in rows), default=0) + 2
    for key, value in rows.items():
        console.print(f"[bold]{key:<{width}}[/bold]{value}", soft_wrap=True, highlight=False)


def print_each_stage(describe: Callable[[Any], str]) -> Callable[[Any], None]:
    """A progress callback for logs and pipes: one dim line on stderr when the stage changes, no bars."""
    seen: set[str] = set()

    def say(progress: Any) -> None:
        if progress.stage not in seen:
            seen.add(progress.stage)
            error_console.print(f"[dim]{describe(progress)}…[/dim]")

    return say


def facts_table() -> Table:
    """A borderless two-column table of facts: a bold name, then what it is (reports' summaries)."""
    from rich.table import Table  # here: only reports draw it, and every command imports this module

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    return table
