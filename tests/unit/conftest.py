"""Shared fixtures of the unit suite: project files, dummy AWS settings and stubbed boto3 clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from sandbox.packaging import load_template

PROJECT_DIR = Path(__file__).resolve().parents[2]
ASL_PATH = PROJECT_DIR / "state_machines" / "order_saga.asl.json"
TEMPLATE_PATH = PROJECT_DIR / "template.yaml"


@pytest.fixture(autouse=True)
def _dummy_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may ever reach a real account: dummy credentials, a fixed region, no profile."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def asl() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text())


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def make_client(service: str) -> Any:
    """A boto3 client that never needs a network: meant to be wrapped in botocore's Stubber."""
    return boto3.client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def client_factory() -> Any:
    return make_client
