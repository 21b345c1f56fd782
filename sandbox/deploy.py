"""Deploy: CloudFormation change sets, the path every engine and AWS take."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from sandbox.errors import DeployError, StackNotFoundError

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed", "no changes")
DEFAULT_POLL_SECONDS = 5.0  # CloudFormation's own pace on AWS; local engines finish in under a second


@dataclass(frozen=True)
class DeployResult:
    """What a deploy did: whether anything changed, and the stack's outputs."""

    stack_name: str
    is_changed: bool
    status: str
    outputs: dict[str, str]


def ensure_artifact_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create the artifact bucket if it is missing."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(f"cannot use artifact bucket {bucket}: {error}") from error
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)


def make_uploader(s3: Any, bucket: str) -> Callable[[str, bytes], None]:
    """An upload function that skips keys already present (keys are content hashes)."""

    def upload(key: str, content: bytes) -> None:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            s3.put_object(Bucket=bucket, Key=key, Body=content)

    return upload


def stack_status(cfn: Any, stack_name: str) -> str | None:
    """The stack's status, or None when it does not exist."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def read_outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs by key; StackNotFoundError when it is not deployed."""
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        if "does not exist" in str(error):
            raise StackNotFoundError(
                f"stack {stack_name} is not deployed", hint="run `sandbox up`"
            ) from error
        raise
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def first_failure(cfn: Any, stack_name: str) -> str:
    """The first failing resource of the latest operation and its reason."""
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except ClientError:
        return "no stack events available"
    for event in reversed(events):
        if event.get("ResourceStatus", "").endswith("_FAILED"):
            return f"{event['LogicalResourceId']} ({event.get('ResourceType')}): {event.get('ResourceStatusReason', 'no reason given')}"
    return "no failed resource reported"


def deploy_stack(
    cfn: Any,
    stack_name: str,
    template: dict[str, Any],
    parameters: dict[str, str],
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float = 1800,
) -> DeployResult:
    """Create and execute a change set; a template with no changes is a no-op."""
    waiter_config = {"Delay": poll_seconds, "MaxAttempts": max(1, int(timeout_seconds / poll_seconds))}
    status = stack_status(cfn, stack_name)
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "REVIEW_IN_PROGRESS"):
        cfn.delete_stack(StackName=stack_name)
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack_name, WaiterConfig=waiter_config)
        status = None
    change_set_type = "CREATE" if status is None else "UPDATE"
    change_set_name = f"sandbox-{int(time.time() * 1000)}"
    try:
        cfn.create_change_set(
            StackName=stack_name,
            ChangeSetName=change_set_name,
            ChangeSetType=change_set_type,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=CAPABILITIES,
        )
    except ClientError as error:
        raise DeployError(f"CloudFormation refused the template: {error}") from error
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=stack_name, ChangeSetName=change_set_name, WaiterConfig=waiter_config
        )
    except WaiterError as error:
        change_set = cfn.describe_change_set(StackName=stack_name, ChangeSetName=change_set_name)
        reason = change_set.get("StatusReason", "")
        if any(marker in reason for marker in _NO_CHANGES):
            cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set_name)
            return DeployResult(stack_name, False, str(status), read_outputs(cfn, stack_name))
        raise DeployError(f"change set failed: {reason or error}") from error
    cfn.execute_change_set(StackName=stack_name, ChangeSetName=change_set_name)
    waiter = "stack_create_complete" if change_set_type == "CREATE" else "stack_update_complete"
    try:
        cfn.get_waiter(waiter).wait(StackName=stack_name, WaiterConfig=waiter_config)
    except WaiterError as error:
        raise DeployError(
            f"deploying {stack_name} failed: {first_failure(cfn, stack_name)}",
            hint=f"stack status is {stack_status(cfn, stack_name)}",
        ) from error
    return DeployResult(stack_name, True, str(stack_status(cfn, stack_name)), read_outputs(cfn, stack_name))
