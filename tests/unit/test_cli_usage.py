"""Usage errors, repeated options and plain output: what the CLI says before and around any engine."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from rich.table import Table

from cli.app import app, repeated_option
from cli.data_commands import describe_reset
from cli.output import make_console


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the console entry point in-process: (exit code, stdout, stderr)."""
    from cli.app import main

    monkeypatch.setenv("SANDBOX_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_PORT", str(unused_port()))

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sandbox", *args])
        with pytest.raises(SystemExit) as caught:
            main()
        captured = capsys.readouterr()
        code = caught.value.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), captured.out, captured.err

    return run


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("up", "--port", "abc"), "sandbox up: Invalid value for '--port'"),
        (("orders", "--target", "gcp"), "sandbox orders: Invalid value for '--target'"),
        (("order", "--nosuch"), "sandbox order: No such option: --nosuch"),
        (("deploy",), "sandbox deploy: Missing option '--target'. Choose from: local, aws"),
        (("logs", "payment", "extra"), "sandbox logs: Got unexpected extra argument"),
        (("nosuch",), "sandbox: No such command 'nosuch'"),
        (("orders", "--limit", "0"), "sandbox orders: Invalid value for '--limit'"),
    ],
)
def test_usage_errors_are_one_red_line_and_exit_1(run_main: Any, args: tuple[str, ...], words: str) -> None:
    # WHEN Click itself refuses the command line
    code, stdout, stderr = run_main(*args)
    # THEN it is the CLI's one error line with a hint, exit code 1, never Click's boxed panel
    assert code == 1
    lines = stderr.splitlines()
    assert lines[0].startswith("error: ") and words in lines[0]
    where = "sandbox" if args[0] == "nosuch" else f"sandbox {args[0]}"
    assert lines[1:] == [f"hint: see `{where} --help`"]
    assert "╭" not in stderr and "Usage:" not in stderr
    assert stdout == ""


def test_bare_sandbox_shows_the_help(run_main: Any) -> None:
    code, stdout, stderr = run_main()
    assert code == 0
    assert "Usage: sandbox" in stdout and "error" not in stderr


@pytest.mark.parametrize(
    ("args", "flag", "values"),
    [
        (("order", "--fail", "payment", "--fail", "shipping"), "--fail", "'payment', then 'shipping'"),
        (("order", "--fail=payment", "--fail", "shipping"), "--fail", "'payment', then 'shipping'"),
        (("order", "--customer", "a", "--json", "--customer=b"), "--customer", "'a', then 'b'"),
        (("logs", "--since", "5m", "--order", "o1", "--since", "1h"), "--since", "'5m', then '1h'"),
        (("up", "--port", "4570", "--json", "--port", "4571"), "--port", "'4570', then '4571'"),
    ],
)
def test_a_repeated_single_value_option_is_refused_naming_it(
    run_main: Any, args: tuple[str, ...], flag: str, values: str
) -> None:
    # WHEN an option that takes one value is given twice
    code, stdout, stderr = run_main(*args)
    # THEN one error line names it and both values, and nothing ran
    assert code == 1
    (line,) = [text for text in stderr.splitlines() if text.startswith("error:")]
    assert line == f"error: {flag} given twice ({values}): it takes one value"
    assert stdout == ""


def test_options_that_take_a_list_may_repeat_and_values_are_not_options() -> None:
    command = typer.main.get_command(app)
    # --item and --flaky take lists; a value that looks like an option is the option's value
    assert repeated_option(command, ["order", "--item", "mug:1", "--item", "kettle:1"]) is None
    assert repeated_option(command, ["order", "--flaky", "payment", "--flaky", "shipping:3"]) is None
    assert repeated_option(command, ["order", "--customer", "--fail", "--fail", "payment"]) is None
    assert repeated_option(command, ["order", "--json", "--json"]) is None  # a flag says the same twice
    assert repeated_option(command, ["order", "--", "--fail", "a", "--fail", "b"]) is None
    refused = repeated_option(command, ["order", "--fail", "payment", "--fail", "shipping"])
    assert refused is not None and refused.hint == "give it once; options that repeat here: --flaky, --item"


def test_without_a_terminal_lines_are_never_wrapped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN output that is not a terminal (pytest captures it) and no COLUMNS asking for a width
    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()
    sentence = " ".join(["a sentence that goes on"] * 20)
    ids = [f"{n:08d}-82ae-4b13-896d-13524f03fbc6" for n in range(4)]
    table = Table("first", "second", "third", "fourth")
    table.add_row(*ids)
    # WHEN a long sentence and a wide table are printed
    console.print(sentence)
    console.print(table)
    out = capsys.readouterr().out
    # THEN the sentence is one line and every cell is whole
    assert sentence in out.splitlines()
    assert all(cell in out for cell in ids)


def test_reset_counts_the_items_of_each_table_as_items() -> None:
    summary = {
        "deletedItems": {"Orders": 24, "Inventory": 5, "Idempotency": 12},
        "purgedQueues": ["OutboxFailureQueue", "AuditQueue"],
        "seededProducts": 5,
    }
    line = describe_reset(summary)
    assert "items deleted per table — orders: 24, inventory: 5, idempotency: 12" in line
    assert "24 orders" not in line
    assert "emptied 3 tables" in line and "purged 2 queues" in line and "reseeded 5 products" in line
