"""`sandbox`: run the outbox -> saga -> compensation flow offline, and break it on purpose."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
import typer.main
from typer._click.exceptions import ClickException  # Typer carries its own Click since 0.29

from cli import (
    aws_commands,
    bench_commands,
    chaos_commands,
    console_commands,
    data_commands,
    debug_commands,
    engine_commands,
    env_commands,
    execute_commands,
    fault_commands,
    history_commands,
    order_commands,
    redrive_commands,
    saga_commands,
    startup,
    trace_commands,
    watch_commands,
)
from cli.output import (
    console,
    error_console,
    report_error,
)
from sandbox import __version__
from sandbox.errors import SandboxError, UsageError

startup.install()  # Typer without pydantic and Markdown: a tenth of a second off every command's start
app = typer.Typer(
    help="Saga sandbox: the transactional outbox, idempotency and a compensating saga, running "
    "offline on a local AWS engine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


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
    _state["debug"] = _state["debug"] or debug  # main() takes --debug from anywhere


engine_commands.register(app)
order_commands.register(app)
aws_commands.register(app)
data_commands.register(app)
fault_commands.register(app)
saga_commands.register(app)
watch_commands.register(app)
trace_commands.register(app)
execute_commands.register(app)
redrive_commands.register(app)
bench_commands.register(app)
chaos_commands.register(app)
env_commands.register(app)
console_commands.register(app)
history_commands.register(app)
debug_commands.register(app)


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


# Options that take several Key=Value pairs after one flag, as the SAM CLI spells them.
_PAIR_LIST_OPTIONS = ("--parameter-overrides", "--tags")


def normalize_args(args: list[str]) -> tuple[list[str], bool]:
    """``args`` as Click reads them, and whether ``--debug`` was given anywhere.

    ``--debug`` works after the command too (`sandbox up --debug`), as the error hint suggests;
    ``--parameter-overrides A=1 B=2`` (the SAM CLI's spelling) becomes one flag per pair.
    """
    normalized: list[str] = []
    is_debug = False
    pairs_of: str | None = None
    for position, arg in enumerate(args):
        if arg == "--":
            normalized += args[position:]
            break
        if arg == "--debug":
            is_debug = True
            continue
        if pairs_of and "=" in arg and not arg.startswith("-"):
            normalized += [pairs_of, arg]
            continue
        pairs_of = arg if arg in _PAIR_LIST_OPTIONS else None
        if pairs_of is None:
            normalized.append(arg)
    return normalized, is_debug


def is_aws_error(error: BaseException) -> bool:
    """Whether ``error`` is botocore's (a refused request, an unreachable endpoint).

    botocore is not imported to say so: a command that never loaded it cannot have raised it.
    """
    exceptions = sys.modules.get("botocore.exceptions")
    return exceptions is not None and isinstance(error, (exceptions.ClientError, exceptions.BotoCoreError))


def main() -> None:
    """Console entry point: the CLI's one error boundary.

    Click runs without its standalone mode, so its usage errors (an unknown option, a value of the
    wrong type, a missing argument) reach this boundary too: one red line and exit code 1, like
    every other mistake, instead of Click's boxed panel and exit code 2.
    """
    args, is_debug = normalize_args(sys.argv[1:])
    _state["debug"] = is_debug
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
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
    except Exception as error:  # the boundary: a bug still gets one line, the traceback on --debug
        if _state["debug"]:
            raise
        if is_aws_error(error):
            report_error(
                SandboxError(
                    f"the engine refused a request: {error}", hint="rerun with --debug for the traceback"
                )
            )
            sys.exit(1)
        report_error(
            SandboxError(
                f"unexpected error: {type(error).__name__}: {error}",
                hint="this is a bug in the sandbox; rerun with --debug and report the traceback",
            )
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
