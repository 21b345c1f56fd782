"""The one place that builds operator-side boto3 clients."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# Local engines always get dummy credentials, never the user's.
LOCAL_ACCESS_KEY = "test"
LOCAL_SECRET_KEY = "test"
_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)


def make_client(service: str, *, endpoint_url: str, region: str) -> Any:
    """A boto3 client for ``service`` on a local engine."""
    return boto3.session.Session(
        region_name=region, aws_access_key_id=LOCAL_ACCESS_KEY, aws_secret_access_key=LOCAL_SECRET_KEY
    ).client(
        service,
        endpoint_url=endpoint_url,
        config=_CONFIG,  # type: ignore[call-overload]
    )
