"""`--target aws` commands: credentials checked first and named as AWS's; no AWS call before a
confirmation that nobody can give."""

from __future__ import annotations

import io
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from sandbox.aws import AwsSession, AwsTarget
from sandbox.errors import AwsCredentialsError


@pytest.fixture
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No config files, no keys, no instance metadata: only what a test sets."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_an_unknown_profile_in_the_environment_is_named(
    no_aws_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN AWS_PROFILE names a profile the config does not have
    monkeypatch.setenv("AWS_PROFILE", "nope")
    # WHEN a session for the AWS target is opened THEN the error names the profile and AWS
    with pytest.raises(AwsCredentialsError) as caught:
        AwsSession(AwsTarget(region="eu-west-1"))
    assert str(caught.value) == f"AWS credentials: the profile 'nope' is not in {no_aws_config / 'config'}"
    assert caught.value.hint and "AWS_PROFILE" in caught.value.hint


def test_an_unknown_profile_flag_is_named(no_aws_config: Path) -> None:
    with pytest.raises(AwsCredentialsError, match="the profile 'nope' is not in") as caught:
        AwsSession(AwsTarget(region="eu-west-1", profile="nope"))
    assert caught.value.hint and "--profile" in caught.value.hint


def test_no_credentials_at_all_is_an_aws_error_before_any_call(no_aws_config: Path) -> None:
    with pytest.raises(
        AwsCredentialsError, match="no AWS credentials found: set AWS_PROFILE or run `aws configure`"
    ):
        AwsSession(AwsTarget(region="eu-west-1"))


def test_a_config_file_that_does_not_parse_is_named(no_aws_config: Path) -> None:
    (no_aws_config / "config").write_text("[default\nregion = eu-west-1\n")
    with pytest.raises(AwsCredentialsError, match="AWS credentials: Unable to parse config file"):
        AwsSession(AwsTarget(region="eu-west-1"))


def test_credentials_aws_refuses_are_named_as_such_on_any_call() -> None:
    # GIVEN credentials (dummy ones, from conftest) that AWS says have expired
    aws = AwsSession(AwsTarget(region="eu-west-1"))
    cfn = aws.client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_client_error(
            "describe_stacks", "ExpiredToken", "The security token included in the request is expired"
        )
        # WHEN a command's first call is made THEN the error is about the AWS credentials
        with pytest.raises(
            AwsCredentialsError, match=r"AWS refused the credentials \(ExpiredToken on CloudFormation"
        ):
            cfn.describe_stacks(StackName="saga-sandbox-dev")


def test_the_account_check_names_refused_credentials() -> None:
    aws = AwsSession(AwsTarget(region="eu-west-1"))
    sts = aws.client("sts")
    aws.client = lambda service: sts  # type: ignore[method-assign]
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", "InvalidClientTokenId", "The security token is invalid")
        with pytest.raises(AwsCredentialsError, match="InvalidClientTokenId"):
            aws.account_id()


def test_other_refusals_stay_what_they_are() -> None:
    # GIVEN a refusal that is not about the credentials THEN it is left to the caller
    from botocore.exceptions import ClientError

    aws = AwsSession(AwsTarget(region="eu-west-1"))
    cfn = aws.client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", "ValidationError", "Stack with id x does not exist")
        with pytest.raises(ClientError):
            cfn.describe_stacks(StackName="x")


# --- the CLI: no terminal, no --yes ---------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def run_without_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Any:
    """Run the console entry point with stdin not a terminal; fail the test on any AWS call."""
    import botocore.client

    from cli.app import main
    from sandbox import targets

    def no_session(*_: Any, **__: Any) -> None:
        pytest.fail("an AWS session was opened")

    def no_call(*_: Any, **__: Any) -> None:
        pytest.fail("an AWS API was called")

    monkeypatch.setattr(targets, "AwsSession", no_session)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", no_call)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setenv("SANDBOX_STATE_DIR", str(tmp_path))
    # were anything to get through, it would meet an unknown profile and a closed endpoint
    monkeypatch.setenv("AWS_PROFILE", "nope")
    monkeypatch.setenv("SANDBOX_AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sandbox", *args])
        with pytest.raises(SystemExit) as caught:
            main()
        captured = capsys.readouterr()
        return int(caught.value.code or 0), captured.out, captured.err

    return run


@pytest.mark.parametrize("command", ["destroy", "deploy"])
def test_without_a_terminal_or_yes_nothing_reaches_aws(run_without_terminal: Any, command: str) -> None:
    # GIVEN no terminal to confirm on, and no --yes
    # WHEN the command runs
    code, stdout, stderr = run_without_terminal(command, "--target", "aws")
    # THEN it stops with one readable line, before any AWS session or call (the fixture checks)
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: this would change AWS resources and no one is here to confirm"]
    assert "pass --yes" in stderr
    assert "engine" not in stderr and "Traceback" not in stderr
    assert stdout == ""


def test_with_yes_an_unknown_profile_is_reported_as_aws_not_the_engine(
    no_aws_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.app import main

    monkeypatch.setenv("AWS_PROFILE", "nope")
    monkeypatch.setattr(sys, "argv", ["sandbox", "destroy", "--target", "aws", "--yes"])
    with pytest.raises(SystemExit) as caught:
        main()
    stderr = capsys.readouterr().err
    assert caught.value.code == 1
    assert "error: AWS credentials: the profile 'nope' is not in" in stderr
    assert "engine" not in stderr
