"""Local engines never see the user's AWS profile, keys or config files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import clients
from sandbox.engine import engine_environment


class SentRequest(Exception):
    """Raised instead of sending: carries the request a client was about to send."""

    def __init__(self, request: Any):
        super().__init__("request captured")
        self.request = request


def _capture(request: Any, **_: Any) -> None:
    raise SentRequest(request)


@pytest.fixture
def users_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A user whose AWS settings would break any client built from them."""
    broken = tmp_path / "config"
    broken.write_text("[profile work\nregion = eu-west-1\n  = dangling\n")  # not a valid INI file
    monkeypatch.setenv("AWS_PROFILE", "nope")
    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "nope")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERSOWNKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "users-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "users-session-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(broken))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(broken))
    monkeypatch.setenv("HOME", str(tmp_path))
    clients._session.cache_clear()  # the session must be built under this environment
    yield
    clients._session.cache_clear()


def test_a_local_client_ignores_the_users_profile_keys_and_config(users_aws_environment: None) -> None:
    # GIVEN AWS_PROFILE names a profile that does not exist, the user's own keys are set, and the
    # config files are broken
    # WHEN a local client is built and makes a call
    client = clients.make_client("sts", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    client.meta.events.register("before-send", _capture)
    with pytest.raises(SentRequest) as sent:
        client.get_caller_identity()
    # THEN it was built, and it signs with the dummy keys, no session token, in the given region
    headers = sent.value.request.headers
    authorization = headers["Authorization"].decode()
    assert f"Credential={clients.LOCAL_ACCESS_KEY}/" in authorization
    assert "/us-east-1/sts/aws4_request" in authorization
    assert "X-Amz-Security-Token" not in headers
    assert sent.value.request.url.startswith("http://127.0.0.1:9")


def test_a_local_client_works_with_an_unknown_aws_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN only AWS_PROFILE, naming a profile that is in no config file
    monkeypatch.setenv("AWS_PROFILE", "nope")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("AWS_CONFIG_FILE", raising=False)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    clients._session.cache_clear()
    try:
        # WHEN a local client is built THEN it is (botocore used to refuse: profile not found)
        client = clients.make_client("dynamodb", endpoint_url="http://127.0.0.1:9", region="eu-west-1")
        assert client.meta.region_name == "eu-west-1"
    finally:
        clients._session.cache_clear()


def test_the_engine_process_gets_dummy_credentials_and_no_aws_config(users_aws_environment: None) -> None:
    # GIVEN the same user environment WHEN the engine's environment is built
    env = engine_environment(4566)
    # THEN none of the user's AWS settings reach the engine or the handlers it runs
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        assert name not in env
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("test", "test")
    # AND botocore inside it reads no ~/.aws file (a broken one would fail every handler's client)
    assert env["AWS_CONFIG_FILE"] == os.devnull
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
