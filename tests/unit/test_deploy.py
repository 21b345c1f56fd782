"""deploy_stack against a stubbed CloudFormation client: change sets, the no-op deploy, failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.stub import Stubber

from sandbox import deploy as deploy_module
from sandbox.deploy import (
    CAPABILITIES,
    deploy_stack,
    ensure_artifact_bucket,
    make_uploader,
    read_outputs,
    stack_status,
)
from sandbox.errors import DeployError, StackNotFoundError

STACK = "saga-sandbox"
CHANGE_SET = "sandbox-1700000000000"
TEMPLATE = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
PARAMETERS = {"FaultInjection": "enabled"}
CREATED = datetime(2024, 1, 1, tzinfo=UTC)
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to create a change set."
)


@pytest.fixture
def cfn(client_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # A fixed clock, so the change set's name is known
    monkeypatch.setattr(deploy_module, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    client = client_factory("cloudformation")
    with Stubber(client) as stubber:
        client.stubber = stubber  # type: ignore[attr-defined]
        yield client
        stubber.assert_no_pending_responses()


def stacks(status: str, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    stack: dict[str, Any] = {"StackName": STACK, "StackStatus": status, "CreationTime": CREATED}
    if outputs is not None:
        stack["Outputs"] = [{"OutputKey": key, "OutputValue": value} for key, value in outputs.items()]
    return {"Stacks": [stack]}


def expect_describe_stacks(cfn: Any, status: str, outputs: dict[str, str] | None = None) -> None:
    cfn.stubber.add_response("describe_stacks", stacks(status, outputs), {"StackName": STACK})


def expect_missing_stack(cfn: Any) -> None:
    cfn.stubber.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message=f"Stack with id {STACK} does not exist",
        expected_params={"StackName": STACK},
    )


def expect_create_change_set(cfn: Any, change_set_type: str) -> None:
    cfn.stubber.add_response(
        "create_change_set",
        {"Id": "cs-arn", "StackId": "stack-arn"},
        {
            "StackName": STACK,
            "ChangeSetName": CHANGE_SET,
            "ChangeSetType": change_set_type,
            "TemplateBody": json.dumps(TEMPLATE),
            "Parameters": [{"ParameterKey": "FaultInjection", "ParameterValue": "enabled"}],
            "Capabilities": CAPABILITIES,
        },
    )


def expect_describe_change_set(cfn: Any, status: str, reason: str | None = None) -> None:
    response: dict[str, Any] = {"ChangeSetName": CHANGE_SET, "StackName": STACK, "Status": status}
    if reason:
        response["StatusReason"] = reason
    cfn.stubber.add_response(
        "describe_change_set", response, {"StackName": STACK, "ChangeSetName": CHANGE_SET}
    )


def test_a_template_without_changes_is_a_no_op(cfn: Any) -> None:
    # GIVEN a deployed stack and a change set CloudFormation rejects as empty
    expect_describe_stacks(cfn, "UPDATE_COMPLETE")  # stack_status
    expect_create_change_set(cfn, "UPDATE")
    expect_describe_change_set(cfn, "FAILED", NO_CHANGES)  # the waiter's poll: a failure state
    expect_describe_change_set(cfn, "FAILED", NO_CHANGES)  # deploy_stack reads the reason
    cfn.stubber.add_response("delete_change_set", {}, {"StackName": STACK, "ChangeSetName": CHANGE_SET})
    expect_describe_stacks(cfn, "UPDATE_COMPLETE", {"ApiId": "abc123"})  # read_outputs
    # WHEN deploying
    result = deploy_stack(cfn, STACK, TEMPLATE, PARAMETERS)
    # THEN nothing changed, the empty change set is cleaned up and the outputs are returned
    assert result.is_changed is False
    assert result.status == "UPDATE_COMPLETE"
    assert result.outputs == {"ApiId": "abc123"}
    assert result.stack_name == STACK


def test_a_changed_template_executes_its_change_set(cfn: Any) -> None:
    expect_describe_stacks(cfn, "CREATE_COMPLETE")
    expect_create_change_set(cfn, "UPDATE")
    expect_describe_change_set(cfn, "CREATE_COMPLETE")
    cfn.stubber.add_response("execute_change_set", {}, {"StackName": STACK, "ChangeSetName": CHANGE_SET})
    expect_describe_stacks(cfn, "UPDATE_COMPLETE")  # stack_update_complete waiter
    expect_describe_stacks(cfn, "UPDATE_COMPLETE")  # final status
    expect_describe_stacks(cfn, "UPDATE_COMPLETE", {"ApiId": "abc123", "StateMachineArn": "arn"})
    result = deploy_stack(cfn, STACK, TEMPLATE, PARAMETERS)
    assert result.is_changed is True
    assert result.status == "UPDATE_COMPLETE"
    assert result.outputs == {"ApiId": "abc123", "StateMachineArn": "arn"}


def test_a_missing_stack_is_created(cfn: Any) -> None:
    expect_missing_stack(cfn)
    expect_create_change_set(cfn, "CREATE")
    expect_describe_change_set(cfn, "CREATE_COMPLETE")
    cfn.stubber.add_response("execute_change_set", {}, {"StackName": STACK, "ChangeSetName": CHANGE_SET})
    expect_describe_stacks(cfn, "CREATE_COMPLETE")  # stack_create_complete waiter
    expect_describe_stacks(cfn, "CREATE_COMPLETE")
    expect_describe_stacks(cfn, "CREATE_COMPLETE", {})
    result = deploy_stack(cfn, STACK, TEMPLATE, PARAMETERS)
    assert result.is_changed is True
    assert result.status == "CREATE_COMPLETE"
    assert result.outputs == {}


def test_a_rolled_back_stack_is_deleted_then_created_again(cfn: Any) -> None:
    expect_describe_stacks(cfn, "ROLLBACK_COMPLETE")
    cfn.stubber.add_response("delete_stack", {}, {"StackName": STACK})
    expect_missing_stack(cfn)  # stack_delete_complete waiter: "does not exist" is success
    expect_create_change_set(cfn, "CREATE")
    expect_describe_change_set(cfn, "CREATE_COMPLETE")
    cfn.stubber.add_response("execute_change_set", {}, {"StackName": STACK, "ChangeSetName": CHANGE_SET})
    expect_describe_stacks(cfn, "CREATE_COMPLETE")
    expect_describe_stacks(cfn, "CREATE_COMPLETE")
    expect_describe_stacks(cfn, "CREATE_COMPLETE", {"ApiId": "new"})
    assert deploy_stack(cfn, STACK, TEMPLATE, PARAMETERS).outputs == {"ApiId": "new"}


def test_a_change_set_failing_for_another_reason_is_a_deploy_error(cfn: Any) -> None:
    reason = "Template format error: Unresolved resource dependencies [Missing]"
    expect_describe_stacks(cfn, "UPDATE_COMPLETE")
    expect_create_change_set(cfn, "UPDATE")
    expect_describe_change_set(cfn, "FAILED", reason)
    expect_describe_change_set(cfn, "FAILED", reason)
    with pytest.raises(DeployError, match=r"change set failed: Template format error"):
        deploy_stack(cfn, STACK, TEMPLATE, PARAMETERS)


def test_a_refused_template_is_a_deploy_error(cfn: Any) -> None:
    expect_describe_stacks(cfn, "UPDATE_COMPLETE")
    cfn.stubber.add_client_error(
        "create_change_set", service_error_code="ValidationError", service_message="Template format error"
    )
    with pytest.raises(DeployError, match="CloudFormation refused the template"):
        deploy_stack(cfn, STACK, TEMPLATE, PARAMETERS)


def test_a_failed_stack_update_names_the_first_failing_resource(cfn: Any) -> None:
    expect_describe_stacks(cfn, "UPDATE_COMPLETE")
    expect_create_change_set(cfn, "UPDATE")
    expect_describe_change_set(cfn, "CREATE_COMPLETE")
    cfn.stubber.add_response("execute_change_set", {}, {"StackName": STACK, "ChangeSetName": CHANGE_SET})
    expect_describe_stacks(cfn, "UPDATE_ROLLBACK_COMPLETE")  # the waiter's failure state
    event = {"StackId": "s", "EventId": "e", "StackName": STACK, "Timestamp": CREATED}
    cfn.stubber.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                {**event, "LogicalResourceId": STACK, "ResourceStatus": "UPDATE_ROLLBACK_COMPLETE"},
                {
                    **event,
                    "LogicalResourceId": "Queue",
                    "ResourceType": "AWS::SQS::Queue",
                    "ResourceStatus": "UPDATE_FAILED",
                    "ResourceStatusReason": "queue name taken",
                },
            ]
        },
        {"StackName": STACK},
    )
    expect_describe_stacks(cfn, "UPDATE_ROLLBACK_COMPLETE")
    with pytest.raises(DeployError) as caught:
        deploy_stack(cfn, STACK, TEMPLATE, PARAMETERS)
    assert "Queue (AWS::SQS::Queue): queue name taken" in str(caught.value)
    assert caught.value.hint == "stack status is UPDATE_ROLLBACK_COMPLETE"


def test_stack_status_and_outputs_of_a_missing_stack(cfn: Any) -> None:
    expect_missing_stack(cfn)
    assert stack_status(cfn, STACK) is None
    expect_missing_stack(cfn)
    with pytest.raises(StackNotFoundError) as caught:
        read_outputs(cfn, STACK)
    assert "sandbox up" in str(caught.value.hint)


# ---------------------------------------------------------------- artifacts


@pytest.fixture
def s3(client_factory: Any) -> Any:
    client = client_factory("s3")
    with Stubber(client) as stubber:
        client.stubber = stubber  # type: ignore[attr-defined]
        yield client
        stubber.assert_no_pending_responses()


def test_uploader_skips_keys_already_present(s3: Any) -> None:
    upload = make_uploader(s3, "bucket")
    s3.stubber.add_response("head_object", {}, {"Bucket": "bucket", "Key": "functions/a.zip"})
    upload("functions/a.zip", b"zip")
    s3.stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    s3.stubber.add_response("put_object", {}, {"Bucket": "bucket", "Key": "functions/b.zip", "Body": b"zip"})
    upload("functions/b.zip", b"zip")


def test_artifact_bucket_is_created_only_when_missing(s3: Any) -> None:
    s3.stubber.add_response("head_bucket", {}, {"Bucket": "b"})
    ensure_artifact_bucket(s3, "b", "us-east-1")
    s3.stubber.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    s3.stubber.add_response(
        "create_bucket",
        {},
        {
            "Bucket": "b",
            "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"},
        },
    )
    ensure_artifact_bucket(s3, "b", "eu-west-1")
    s3.stubber.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    with pytest.raises(DeployError, match="cannot use artifact bucket b"):
        ensure_artifact_bucket(s3, "b", "us-east-1")
