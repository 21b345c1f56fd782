"""The AWS target: credentials, the artifact bucket, packaging for Lambda, signed API calls.

Nothing here runs unless a command names ``--target aws``; local engines never see the user's
credentials. ``endpoint_url`` points the same code at an AWS-compatible endpoint so the AWS path
can be tested offline, and changes nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ConfigParseError, ProfileNotFound

from sandbox.catalog import seed_inventory
from sandbox.deploy import DEFAULT_POLL_SECONDS, ensure_artifact_bucket, make_uploader, read_outputs
from sandbox.errors import AwsCredentialsError, UsageError
from sandbox.orders import API_STAGE as API_STAGE  # where sandbox.targets reads the API's stage
from sandbox.orders import OrdersClient, Signer, local_api_url
from sandbox.packaging import load_template, package_template
from sandbox.settings import Settings, command_flags

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

AWS_POLL_SECONDS = DEFAULT_POLL_SECONDS
ENDPOINT_POLL_SECONDS = 0.2  # an AWS-compatible local endpoint settles in well under a second


@dataclass(frozen=True)
class AwsTarget:
    """Where `--target aws` commands act: stage, region, profile and an optional endpoint."""

    stage: str = "dev"
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    artifact_bucket: str | None = None
    # A project's own stack name (samconfig's stack_name, --stack-name); None: the demo's per stage.
    stack: str | None = None

    @classmethod
    def load(
        cls,
        settings: Settings | None = None,
        *,
        stage: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        artifact_bucket: str | None = None,
    ) -> AwsTarget:
        """Flags (None = unset) over the settings' stage and AWS endpoint (SANDBOX_STAGE, ...).

        A project other than the demo takes its stack name, region, profile and bucket from its
        samconfig file's environment (``default`` unless --config-env names another), as `sam deploy`.
        """
        settings = settings or Settings.load()
        flags = {"stage": stage, "region": region, "profile": profile, "endpoint_url": endpoint_url,
                 "artifact_bucket": artifact_bucket}  # fmt: skip
        values: dict[str, Any] = {"stage": settings.stage, "endpoint_url": settings.aws_endpoint_url}
        if not settings.is_demo:
            samconfig = settings.samconfig(is_local=False)
            named = (command_flags.get() or {}).get("stack_name") or os.environ.get("SANDBOX_STACK_NAME")
            values["stack"] = named or samconfig.text("stack_name") or settings.stack_name
            for key, name in (("region", "region"), ("profile", "profile"), ("artifact_bucket", "s3_bucket")):
                if samconfig.text(name):
                    values[key] = samconfig.text(name)
        values.update({key: value for key, value in flags.items() if value is not None})
        target = cls(**values)
        if not target.stage.replace("-", "").isalnum():
            raise UsageError(f"--stage {target.stage!r}: use letters, digits and dashes")
        return target

    @property
    def stack_name(self) -> str:
        return self.stack or f"saga-sandbox-{self.stage}"

    @property
    def poll_seconds(self) -> float:
        return ENDPOINT_POLL_SECONDS if self.endpoint_url else AWS_POLL_SECONDS


# Codes with which AWS refuses the credentials themselves, whatever the call: expired or unknown
# keys, a wrong secret. Other refusals (AccessDenied on one resource, ...) are left to the caller.
CREDENTIAL_ERROR_CODES = frozenset({
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSignatureException", "AuthFailure",
})  # fmt: skip
CREDENTIALS_HINT = "refresh them (`aws sso login`, `aws configure`) or choose another --profile"


def _raise_for_refused_credentials(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    """Turn AWS's refusal of the credentials into an error that names them, not the operation."""
    error = parsed.get("Error") or {}
    if error.get("Code") in CREDENTIAL_ERROR_CODES:
        raise AwsCredentialsError(
            f"AWS refused the credentials ({error['Code']} on {model.service_model.service_id} "
            f"{model.name}): {error.get('Message') or 'no message'}",
            hint=CREDENTIALS_HINT,
        )


def _profile_not_found(error: ProfileNotFound, target: AwsTarget) -> AwsCredentialsError:
    profile = error.kwargs.get("profile", target.profile)
    config_file = os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    if target.profile:
        hint = "check --profile; `aws configure list-profiles` lists yours"
    else:
        hint = "AWS_PROFILE (or AWS_DEFAULT_PROFILE) names it: unset or fix it; `aws configure list-profiles`"
    return AwsCredentialsError(f"AWS credentials: the profile {profile!r} is not in {config_file}", hint=hint)


class AwsSession:
    """A boto3 session on the user's credentials, resolved at once, with clients for the target."""

    def __init__(self, target: AwsTarget):
        import boto3  # on first use: commands that never reach AWS do not pay for it

        self.target = target
        self._account_id: str | None = None
        # Resolve everything the session needs from the user's configuration now, so an unknown
        # profile, a broken config file or missing or expired credentials are reported as such,
        # before any command does work, rather than surfacing from the first API call.
        try:
            self.session = boto3.session.Session(profile_name=target.profile, region_name=target.region)
            region = self.session.region_name
            credentials = self.session.get_credentials()
            if credentials is not None:
                credentials.get_frozen_credentials()  # refreshes SSO / assume-role credentials now
        except ProfileNotFound as error:
            raise _profile_not_found(error, target) from error
        except ConfigParseError as error:
            raise AwsCredentialsError(
                f"AWS credentials: {error}", hint="fix that file, or point AWS_CONFIG_FILE at another"
            ) from error
        except BotoCoreError as error:  # an expired SSO session, a failing credential_process, ...
            raise AwsCredentialsError(f"AWS credentials: {error}", hint=CREDENTIALS_HINT) from error
        if credentials is None:
            raise AwsCredentialsError(
                "no AWS credentials found: set AWS_PROFILE or run `aws configure`",
                hint="or pass --profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        if not region:
            raise UsageError(
                "no AWS region configured",
                hint="pass --region or set AWS_DEFAULT_REGION (or a region in your AWS profile)",
            )
        self.region: str = region

    def client(self, service: str) -> Any:
        from botocore.config import Config

        config = Config(retries={"max_attempts": 5, "mode": "standard"})
        client = self.session.client(service, endpoint_url=self.target.endpoint_url, config=config)  # type: ignore[call-overload]
        client.meta.events.register("after-call", _raise_for_refused_credentials)
        return client

    def account_id(self) -> str:
        """The account the credentials belong to (also proves AWS accepts them); asked once."""
        if self._account_id is None:
            try:
                sts: STSClient = self.client("sts")
                self._account_id = str(sts.get_caller_identity()["Account"])
            except ClientError as error:
                raise AwsCredentialsError(
                    f"AWS credentials: STS refused them: {error}", hint=CREDENTIALS_HINT
                ) from error
            except BotoCoreError as error:
                raise AwsCredentialsError(
                    f"could not reach AWS to check the credentials: {error}",
                    hint="check your network and --region",
                ) from error
        return self._account_id

    def signer(self) -> Signer:
        """SigV4-sign requests to the stack's REST API (methods protected with AWS_IAM)."""
        credentials = self.session.get_credentials()
        if credentials is None:
            raise AwsCredentialsError(
                "no AWS credentials to sign API requests with", hint="run `aws configure`"
            )
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        frozen = credentials.get_frozen_credentials()
        region = self.region

        def sign(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
            request = AWSRequest(method=method, url=url, data=body, headers=headers)
            SigV4Auth(frozen, "execute-api", region).add_auth(request)
            return dict(request.headers.items())

        return sign


def artifact_bucket_name(account_id: str, region: str) -> str:
    """The artifact bucket of an account and region (S3 names are global)."""
    return f"saga-sandbox-artifacts-{account_id}-{region}"


def ensure_secure_bucket(s3: S3Client, bucket: str, region: str) -> bool:
    """Create the artifact bucket if missing: versioned, encrypted, no public access. True if created."""
    if not ensure_artifact_bucket(s3, bucket, region, hint="pass --artifact-bucket with a bucket you own"):
        return False
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return True


def aws_parameters(*, is_api_open: bool) -> dict[str, str]:
    """The template parameters of an AWS stack (the only input that differs from a local one)."""
    return {"ApiAuth": "none" if is_api_open else "iam"}


def package_for_aws(
    settings: Settings, bucket: str, upload: Callable[[str, bytes], None], progress: Callable[[str], None]
) -> dict[str, Any]:
    """The template built as `sam build` builds it: each function for its runtime's Python and architecture."""
    template = load_template(settings.template_path)
    progress("building functions and layers")
    return package_template(
        template, settings.template_path.parent, bucket, upload, cache_dir=settings.cache_dir, notify=progress,
        key_prefix=settings.samconfig(is_local=False).text("s3_prefix") or "",
    )  # fmt: skip


def prepare_artifacts(
    aws: AwsSession, progress: Callable[[str], None]
) -> tuple[str, Callable[[str, bytes], None]]:
    """The artifact bucket (created securely if missing) and an uploader into it."""
    bucket = aws.target.artifact_bucket or artifact_bucket_name(aws.account_id(), aws.region)
    s3: S3Client = aws.client("s3")
    if ensure_secure_bucket(s3, bucket, aws.region):
        progress(f"created artifact bucket {bucket} (versioned, encrypted, public access blocked)")
    return bucket, make_uploader(s3, bucket)


def api_url(target: AwsTarget, outputs: dict[str, str]) -> str:
    """The deployed REST API's base URL, its stage included (an offline endpoint serves it by path)."""
    if target.endpoint_url:
        return local_api_url(target.endpoint_url, outputs["ApiId"])
    return outputs["ApiUrl"]


def aws_orders_client(aws: AwsSession) -> OrdersClient:
    """A client of the deployed stack's API that signs its requests when the API requires it."""
    outputs = read_outputs(aws.client("cloudformation"), aws.target.stack_name)
    signer = aws.signer() if outputs.get("ApiAuth", "iam") == "iam" else None
    return OrdersClient(api_url(aws.target, outputs), signer)


def seed_aws_inventory(aws: AwsSession, outputs: dict[str, str]) -> int:
    """Add the demo products that are missing from the stack's inventory (never overwrites stock)."""
    return seed_inventory(aws.client("dynamodb"), outputs["InventoryTableName"])
