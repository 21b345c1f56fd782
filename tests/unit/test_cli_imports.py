"""A command loads only what it uses: what `sandbox --help` and the command modules import.

Each check runs a fresh interpreter (what was imported before is what a user's shell pays for);
no timings are asserted, only which modules were loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
import typer._coercion
import typer.core
import typer.main
from typer._click import Context

from cli import kinds
from cli.app import app
from cli.startup import UNDECIDED, plain_value

ROOT = Path(__file__).resolve().parents[2]
# What no command module may load to register its commands: the AWS SDK, pydantic (Typer's
# coercion), YAML, the engine and its patches, deploying, the trace and fault readers, the bench
# and chaos runners, the web console, the file watcher, samconfig's writer, the HTTP client.
HEAVY = (
    "boto3",
    "botocore",
    "pydantic",
    "yaml",
    "sandbox.targets",
    "sandbox.aws",
    "sandbox.deploy",
    "sandbox.packaging",
    "sandbox.stack",
    "sandbox.engine",
    "sandbox.engine_patches",
    "sandbox.runs",
    "sandbox.orders",
    "sandbox.trace",
    "sandbox.faults",
    "sandbox.executions",
    "sandbox.saga_map",
    "sandbox.chaos",
    "sandbox.saga_chaos",
    "sandbox.bench",
    "sandbox.reload",
    "sandbox.console",
    "watchfiles",
    "starlette",
    "uvicorn",
    "tomlkit",
    "urllib.request",
    "rich",
)
# cli.bench_commands imports the bench's runner at its top (and with it the stack, the engine's
# patches, the trace and fault readers, botocore); once it loads them in the command, it joins
# the modules checked below and `sandbox --help` is held to all of HEAVY.
NOT_YET_LAZY: set[str] = set()
# Loaded by a command when it runs, not to start: `deploy --guided`'s questions, `order`'s flags.
LOADED_BY_THEIR_COMMAND = {"cli.guided", "cli.order_options"}
# What `sandbox --help` may never load, whatever the command modules do: Typer's pydantic
# coercion, the renderers Typer's help module names but this CLI never calls, the SDK.
NEVER_FOR_HELP = ("boto3", "pydantic", "yaml", "markdown_it", "rich.markdown", "rich.traceback",
                  "sandbox.targets", "sandbox.chaos", "sandbox.saga_chaos", "sandbox.runs", "watchfiles",
                  "starlette", "uvicorn", "tomlkit")  # fmt: skip


def loaded_after(code: str, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; what it printed last is {"modules": [...], ...}."""
    script = (
        "import contextlib, io, json, sys\n"
        f"{code}\n"
        "print(json.dumps({'modules': sorted(sys.modules), **globals().get('extra', {})}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.splitlines()[-1]))


def heavy_among(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == name or m.startswith(f"{name}.") for name in names))


def test_the_command_modules_load_nothing_heavy_to_register_their_commands() -> None:
    # GIVEN every module `sandbox` imports to start (cli.app itself once no module is NOT_YET_LAZY)
    names = sorted(
        f"cli.{path.stem}"
        for path in (ROOT / "cli").glob("*.py")
        if path.stem != "__init__"
        and f"cli.{path.stem}" not in NOT_YET_LAZY | LOADED_BY_THEIR_COMMAND
        and (path.stem != "app" or not NOT_YET_LAZY)
    )
    # WHEN they are all imported in a fresh interpreter
    loaded = loaded_after("\n".join(f"import {name}" for name in names))["modules"]
    # THEN none of them loaded the SDK, pydantic, rich or any runner: the commands load them when they run
    assert "cli.order_commands" in loaded and "cli.startup" in loaded
    assert heavy_among(loaded, HEAVY) == []


def test_help_renders_its_panels_without_pydantic_markdown_or_the_sdk() -> None:
    # GIVEN `sandbox --help` run as the console script runs it
    code = (
        "sys.argv = ['sandbox', '--help']\n"
        "from cli.app import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "extra = {'help': out.getvalue()}\n"
    )
    # WHEN it has printed the help
    after = loaded_after(code, env={**os.environ, "COLUMNS": "100"})
    # THEN the help is Typer's rich one, and none of what it never uses was loaded
    assert "Commands" in after["help"] and "╭─" in after["help"] and " order " in after["help"]
    assert heavy_among(after["modules"], NEVER_FOR_HELP) == []


def test_the_renderers_help_left_out_load_whole_when_imported_later() -> None:
    # GIVEN the help rendered (its module ran with stand-ins for the renderers it never calls)
    code = (
        "sys.argv = ['sandbox', '--help']\n"
        "from cli.app import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        # WHEN something in the same process imports them, and Typer's help module names them
        "import rich.markdown, rich.traceback, typer.rich_utils\n"
        "from rich.console import Console\n"
        "rendered = Console(file=io.StringIO(), width=40)\n"
        "rendered.print(typer.rich_utils.Markdown('# Title'))\n"
        "extra = {'real': [rich.markdown.Markdown.__module__, rich.traceback.Traceback.__module__],\n"
        "         'text': rendered.file.getvalue()}\n"
    )
    after = loaded_after(code)
    # THEN they are the real modules, and Typer's names for them work as the real classes
    assert after["real"] == ["rich.markdown", "rich.traceback"]
    assert "Title" in after["text"]


def test_listing_orders_without_an_engine_loads_neither_pydantic_nor_the_sdk(tmp_path: Path) -> None:
    # GIVEN no engine (an empty state folder) and options of every plain type Typer coerces
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SANDBOX_", "AWS_"))}
    env.update(SANDBOX_STATE_DIR=str(tmp_path), SANDBOX_PORT="1")
    code = (
        "sys.argv = ['sandbox', 'orders', '--limit', '5', '--status', 'completed', '--json']\n"
        "from cli.app import main\n"
        "with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "extra = {'stderr': err.getvalue()}\n"
    )
    # WHEN `sandbox orders` parses them and finds no engine
    after = loaded_after(code, env=env)
    # THEN it said so, having coerced --limit and --status without pydantic, and never loaded the SDK
    assert "no sandbox engine is running" in after["stderr"]
    never = ("pydantic", "boto3", "sandbox.targets", "yaml", *(() if NOT_YET_LAZY else ("botocore",)))
    assert heavy_among(after["modules"], never) == []


def test_typer_coerces_plain_values_through_the_cli() -> None:
    # GIVEN the CLI imported (it installs its coercion into Typer)
    # THEN the coercion Typer calls is the CLI's: a Typer that cannot take it fails here, not silently
    assert getattr(typer.core.build_runtime_param, "is_plain_first", False)  # type: ignore[attr-defined]


def _samples(annotation: Any) -> list[Any]:
    """Values a user or a default gives a parameter of this type, right and wrong."""
    item = get_args(annotation)[0] if get_origin(annotation) is list else None
    if item is not None:
        return [[value] for value in _samples(item)] + [[], ("a", "b")]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        values = [str(member.value) for member in annotation]
        return [*annotation, *values, *(v.upper() for v in values), *(v.title() for v in values), "bogus"]
    samples: dict[Any, list[Any]] = {
        str: ["x", "", "with space", 5],
        int: [0, 5, "5", "-3", "007", "+5", " 5", "5.0", "x", "", 2.5, True],
        float: [0, 0.5, 60, "2.5", "7", "-.5", "5.", "1e3", "nan", "x", "", True],
        Path: ["some/file.json", "", "/"],
        bool: [True, False],
    }
    return samples.get(annotation, ["x"])


def _outcome(run: Any) -> Any:
    try:
        value = run()
    except Exception as error:
        return ("refused", type(error).__name__, str(error))
    return ("value", type(value).__name__, value)


def test_every_parameter_of_the_cli_coerces_as_typer_does() -> None:
    # GIVEN every parameter of every command, and values right and wrong for its type
    group = typer.main.get_command(app)
    checked = 0
    commands = [
        (name, command, sub)
        for name, command in group.commands.items()  # type: ignore[attr-defined]
        for sub in (getattr(command, "commands", None) or {None: command}).values()
    ]
    for _name, _command, leaf in commands:
        context = Context(leaf)
        for param in leaf.params:
            descriptor = param.type_descriptor
            typers = typer._coercion.build_runtime_param(descriptor)  # Typer's own, untouched
            for value in [*_samples(descriptor.annotation), param.default]:
                if value is None:
                    continue
                plain = plain_value(descriptor.annotation, descriptor.parameter_info, value, param, context)
                expected = _outcome(
                    lambda v=value, t=typers, p=param, c=context: t._coerce_value(v, param=p, ctx=c)
                )
                # WHEN the CLI coerces it THEN it gives Typer's value, or leaves the value to Typer
                if plain is not UNDECIDED:
                    assert expected == ("value", type(plain).__name__, plain), (leaf.name, param.name, value)
                    checked += 1
    assert checked > 100  # the plain values were coerced here, not all left to Typer


def test_the_kinds_the_help_names_are_the_kinds_the_runners_take() -> None:
    from sandbox.chaos import FAULT_KINDS

    assert kinds.ORDER_FAULT_KINDS == FAULT_KINDS
