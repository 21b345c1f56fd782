"""The one place that builds operator-side boto3 clients.

boto3 is imported on first use, not with this module: it costs the CLI a tenth of a second, and
the commands that only talk HTTP to the order API (``sandbox order``) never need it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.config import Config

# Local engines always get dummy credentials, never the user's.
LOCAL_ACCESS_KEY = "test"
LOCAL_SECRET_KEY = "test"

# Explicit keys are not enough to keep the user's AWS configuration away from a local engine:
# botocore still reads AWS_PROFILE / AWS_DEFAULT_PROFILE and the config files named by
# AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/...) to build any client, and
# fails on a profile it cannot find or a file it cannot parse. These overrides (botocore's
# documented ``session_vars``: config key, environment variables, default, conversion) give the
# local session no profile and no config files, whatever the environment says.
_LOCAL_SESSION_VARS = {
    "profile": (None, None, None, None),
    "config_file": (None, None, None, None),
    "credentials_file": (None, None, None, None),
}


@cache
def _session(region: str) -> Session:
    # One session per region: its loader caches the service models, so later clients are cheap.
    import boto3
    import botocore.session

    return boto3.session.Session(
        botocore_session=botocore.session.Session(session_vars=_LOCAL_SESSION_VARS),
        region_name=region,
        aws_access_key_id=LOCAL_ACCESS_KEY,
        aws_secret_access_key=LOCAL_SECRET_KEY,
    )


@cache
def _config() -> Config:
    from botocore.config import Config

    return Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)


# Client factories (this one, ``LocalStack.client``, ``Target.client``, ``AwsSession.client``)
# return Any, and each caller names the type where it keeps the client (``sqs: SQSClient = ...``,
# a ``cfn: CloudFormationClient`` parameter): mypy then checks every call on it. Overloads from
# each service name to its client type on every factory would cost ten stubs a factory to check
# only that the name matches the annotation beside it.
def make_client(service: str, *, endpoint_url: str, region: str) -> Any:
    """A boto3 client for ``service`` on a local engine (the user's AWS profile and keys play no part)."""
    return _session(region).client(  # type: ignore[call-overload]  # a name, not one of the stubs' literals
        service,
        endpoint_url=endpoint_url,
        config=_config(),
    )
