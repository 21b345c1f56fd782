"""The one place that builds operator-side boto3 clients."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Local engines always get dummy credentials, never the user's.
LOCAL_ACCESS_KEY = "test"
LOCAL_SECRET_KEY = "test"
_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)


@cache
def _session(region: str) -> boto3.session.Session:
    # One session per region: its loader caches the service models, so later clients are cheap.
    return boto3.session.Session(
        region_name=region, aws_access_key_id=LOCAL_ACCESS_KEY, aws_secret_access_key=LOCAL_SECRET_KEY
    )


def make_client(service: str, *, endpoint_url: str, region: str) -> Any:
    """A boto3 client for ``service`` on a local engine."""
    return _session(region).client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        config=_CONFIG,
    )
