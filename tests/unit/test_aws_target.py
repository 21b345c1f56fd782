"""The AWS target's settings, artifact bucket and request signing, without any network."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from sandbox.aws import AwsSession, AwsTarget, api_url, artifact_bucket_name, ensure_secure_bucket
from sandbox.errors import UsageError


def test_target_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_STAGE", raising=False)
    monkeypatch.delenv("SANDBOX_AWS_ENDPOINT_URL", raising=False)
    target = AwsTarget.load()
    assert (target.stage, target.stack_name, target.endpoint_url) == ("dev", "saga-sandbox-dev", None)
    monkeypatch.setenv("SANDBOX_AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("SANDBOX_STAGE", "qa")
    target = AwsTarget.load()
    assert (target.stack_name, target.endpoint_url) == ("saga-sandbox-qa", "http://127.0.0.1:4566")
    # a flag wins over the environment
    assert AwsTarget.load(stage="prod").stack_name == "saga-sandbox-prod"


def test_a_bad_stage_is_refused() -> None:
    with pytest.raises(UsageError, match="stage"):
        AwsTarget.load(stage="my stage!")


def test_artifact_bucket_name_is_per_account_and_region() -> None:
    assert (
        artifact_bucket_name("123456789012", "eu-west-1") == "saga-sandbox-artifacts-123456789012-eu-west-1"
    )


def test_api_url_is_the_aws_url_unless_an_endpoint_is_given() -> None:
    outputs = {"ApiId": "abc123", "ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com/api"}
    assert api_url(AwsTarget(), outputs) == outputs["ApiUrl"]
    # an offline endpoint serves the REST API's stage by path
    offline = AwsTarget(endpoint_url="http://127.0.0.1:4566/")
    assert api_url(offline, outputs) == "http://127.0.0.1:4566/_aws/execute-api/abc123/api"


def test_new_artifact_bucket_is_private_encrypted_and_versioned(client_factory: Any) -> None:
    # GIVEN no bucket yet
    s3 = client_factory("s3")
    bucket = "saga-sandbox-artifacts-123456789012-eu-west-1"
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", "404", http_status_code=404, expected_params={"Bucket": bucket})
        stub.add_response(
            "create_bucket",
            {},
            {"Bucket": bucket, "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
        )
        stub.add_response("put_public_access_block", {}, {
            "Bucket": bucket,
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
            },
        })  # fmt: skip
        stub.add_response("put_bucket_encryption", {}, {
            "Bucket": bucket,
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        })  # fmt: skip
        stub.add_response(
            "put_bucket_versioning", {}, {"Bucket": bucket, "VersioningConfiguration": {"Status": "Enabled"}}
        )
        # WHEN it is ensured
        assert ensure_secure_bucket(s3, bucket, "eu-west-1") is True
        stub.assert_no_pending_responses()


def test_an_existing_artifact_bucket_is_left_alone(client_factory: Any) -> None:
    s3 = client_factory("s3")
    with Stubber(s3) as stub:
        stub.add_response("head_bucket", {}, {"Bucket": "mine"})
        assert ensure_secure_bucket(s3, "mine", "us-east-1") is False


def test_signer_adds_a_sigv4_authorization_for_execute_api() -> None:
    # GIVEN dummy credentials (conftest) and a region
    aws = AwsSession(AwsTarget(region="eu-west-1"))
    # WHEN a request is signed
    headers = aws.signer()("POST", "https://abc.execute-api.eu-west-1.amazonaws.com/api/orders", b"{}", {})
    # THEN it carries a SigV4 signature scoped to execute-api in that region
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/eu-west-1/execute-api/aws4_request" in headers["Authorization"]
    assert "X-Amz-Date" in headers


def test_no_region_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(UsageError, match="no AWS region"):
        AwsSession(AwsTarget())
