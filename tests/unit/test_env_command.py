"""`sandbox env`: variables a shell can evaluate, whatever the values hold."""

from __future__ import annotations

import subprocess

from cli.env_commands import Shell, render
from sandbox.settings import Settings
from sandbox.targets import LocalTarget, stack_variables

TRICKY = {"SANDBOX_A": 'it\'s $HOME `x` \\ "q"', "SANDBOX_B": "plain"}


def test_outputs_become_sandbox_variables_and_the_local_api_url_wins() -> None:
    variables = stack_variables(
        {"OrdersTableName": "orders-t", "OutboxFailureQueueUrl": "http://q", "ApiUrl": "https://aws"},
        "http://local",
    )
    assert variables == {"SANDBOX_API_URL": "http://local", "SANDBOX_ORDERS_TABLE": "orders-t",
                         "SANDBOX_OUTBOX_FAILURE_QUEUE_URL": "http://q"}  # fmt: skip


def test_the_local_environment_names_the_engine_and_dummy_keys_only() -> None:
    target = LocalTarget(Settings(region="eu-west-1"), "http://127.0.0.1:4566")
    variables = target.environment({"ApiId": "abc", "OrdersTableName": "o"})
    assert variables["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert (variables["AWS_ACCESS_KEY_ID"], variables["AWS_SECRET_ACCESS_KEY"]) == ("test", "test")
    assert variables["SANDBOX_API_URL"] == "http://127.0.0.1:4566/_aws/execute-api/abc/api"


def test_bash_reads_back_exactly_the_values() -> None:
    script = render(TRICKY, Shell.bash) + 'printf "%s|%s" "$SANDBOX_A" "$SANDBOX_B"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.stdout == f"{TRICKY['SANDBOX_A']}|{TRICKY['SANDBOX_B']}", result.stderr


def test_fish_and_powershell_escape_what_their_single_quotes_treat_specially() -> None:
    # fish: backslash and quote are escaped inside '...'; PowerShell doubles the quote only
    assert render({"A": "it's a\\b"}, Shell.fish) == "set -gx A 'it\\'s a\\\\b'\n"
    assert render({"A": "it's a\\b"}, Shell.powershell) == "$env:A = 'it''s a\\b'\n"


def test_bash_lines_are_exports() -> None:
    assert render({"A": "x"}, Shell.bash) == "export A='x'\n"
    assert render({"A": "x"}, Shell.fish) == "set -gx A 'x'\n"
    assert render({"A": "x"}, Shell.powershell) == "$env:A = 'x'\n"


def test_completion_offers_steps_engines_and_nothing_without_an_engine(tmp_path, monkeypatch) -> None:
    from cli.options import complete_engine, complete_order_id, complete_step

    assert complete_step("p") == ["payment"]
    assert complete_engine("") == ["embedded", "localstack", "ministack-docker"]
    monkeypatch.setenv("SANDBOX_STATE_DIR", str(tmp_path))
    assert complete_order_id("") == []
