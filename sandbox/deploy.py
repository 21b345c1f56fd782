"""Deploy: CloudFormation change sets, the path every engine and AWS take."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError, WaiterError

from sandbox.errors import DeployError, StackNotFoundError
from sandbox.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.literals import CapabilityType, ChangeSetTypeType
    from mypy_boto3_cloudformation.type_defs import StackEventTypeDef, WaiterConfigTypeDef
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import CreateBucketRequestTypeDef

CAPABILITIES: list[CapabilityType] = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed", "no changes")
MAX_TEMPLATE_BODY_BYTES = 51_200  # CloudFormation's limit for TemplateBody
StackEventHandler = Callable[[dict[str, Any]], None]
DEFAULT_POLL_SECONDS = 5.0  # CloudFormation's own pace on AWS; local engines finish in under a second
# The stack's own event that opens an operation (a rollback is part of the operation it undoes).
_OPERATION_STARTS = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "IMPORT_IN_PROGRESS")


def is_missing_stack(error: ClientError) -> bool:
    """Whether CloudFormation refused a call because the stack does not exist.

    CloudFormation has no not-found code for stacks: it answers ``ValidationError``, the code
    botocore's own stack waiters take to mean "no such stack".
    """
    return bool(error.response.get("Error", {}).get("Code") == "ValidationError")


@dataclass(frozen=True)
class DeployResult:
    """What a deploy did: whether anything changed, and the stack's outputs."""

    stack_name: str
    is_changed: bool
    status: str
    outputs: dict[str, str]


def ensure_artifact_bucket(s3: S3Client, bucket: str, region: str, *, hint: str | None = None) -> bool:
    """Create the artifact bucket if it is missing; True when this call created it."""
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(f"cannot use artifact bucket {bucket}: {error}", hint=hint) from error
    request: CreateBucketRequestTypeDef = {"Bucket": bucket}
    if region != "us-east-1":
        # The stubs list the regions of their release; whichever one the user names, S3 judges it.
        location = cast("BucketLocationConstraintType", region)
        request["CreateBucketConfiguration"] = {"LocationConstraint": location}
    s3.create_bucket(**request)
    return True


def make_uploader(s3: S3Client, bucket: str) -> Callable[[str, bytes], None]:
    """An upload function that skips keys already present (keys are content hashes)."""

    def upload(key: str, content: bytes) -> None:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            s3.put_object(Bucket=bucket, Key=key, Body=content)

    return upload


def stack_status(cfn: CloudFormationClient, stack_name: str) -> str | None:
    """The stack's status, or None when it does not exist."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if is_missing_stack(error):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def read_outputs(cfn: CloudFormationClient, stack_name: str) -> dict[str, str]:
    """The stack's outputs by key; StackNotFoundError when it is not deployed."""
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        if is_missing_stack(error):
            raise StackNotFoundError(
                f"stack {stack_name} is not deployed", hint="run `sandbox up`"
            ) from error
        raise
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def unchanged_result(cfn: CloudFormationClient, stack_name: str) -> DeployResult:
    """The result of a deploy that found nothing to change (one DescribeStacks)."""
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    return DeployResult(stack_name, False, str(stack["StackStatus"]), outputs)


def is_operation_start(event: StackEventTypeDef) -> bool:
    """Whether a stack event is the stack's own opening of a create, update, delete or import."""
    is_stack_itself = event.get("LogicalResourceId") == event.get("StackName")
    return is_stack_itself and event.get("ResourceStatus") in _OPERATION_STARTS


def first_failure(cfn: CloudFormationClient, stack_name: str) -> str:
    """The first failing resource of the latest operation and its reason."""
    events: list[StackEventTypeDef] = []
    try:
        for event in stack_events(cfn, stack_name):  # newest first, back to the operation's start
            events.append(event)
            if is_operation_start(event):
                break
    except ClientError:
        return "no stack events available"
    if not events:
        return "no stack events available"
    for event in reversed(events):
        if event.get("ResourceStatus", "").endswith("_FAILED"):
            return f"{event['LogicalResourceId']} ({event.get('ResourceType')}): {event.get('ResourceStatusReason', 'no reason given')}"
    return "no failed resource reported"


@dataclass(frozen=True)
class ResourceChange:
    """One row of a change set: what CloudFormation will do to one resource."""

    action: str
    logical_id: str
    resource_type: str
    replacement: str


@dataclass(frozen=True)
class ChangeSetPlan:
    """A created change set waiting to be executed."""

    stack_name: str
    name: str
    change_set_type: str
    changes: list[ResourceChange] = field(default_factory=list)


def _waiter_config(poll_seconds: float, timeout_seconds: float) -> WaiterConfigTypeDef:
    # The stubs say Delay is an int; botocore sleeps whatever it is given, and a local engine's
    # pace is a fraction of a second.
    config = {"Delay": poll_seconds, "MaxAttempts": max(1, int(timeout_seconds / poll_seconds))}
    return cast("WaiterConfigTypeDef", config)


def read_changes(cfn: CloudFormationClient, stack_name: str, change_set_name: str) -> list[ResourceChange]:
    """Every resource change of a change set (all pages)."""
    changes: list[ResourceChange] = []
    pages = cfn.get_paginator("describe_change_set").paginate(
        StackName=stack_name, ChangeSetName=change_set_name
    )
    for page in pages:
        for change in page.get("Changes", []):
            detail = change.get("ResourceChange", {})
            changes.append(
                ResourceChange(
                    action=detail.get("Action", "?"),
                    logical_id=detail.get("LogicalResourceId", "?"),
                    resource_type=detail.get("ResourceType", "?"),
                    replacement=detail.get("Replacement") or "-",
                )
            )
    return changes


def plan_change_set(
    cfn: CloudFormationClient,
    stack_name: str,
    template: dict[str, Any],
    parameters: dict[str, str],
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float = 1800,
    with_changes: bool = True,
    tags: dict[str, str] | None = None,
    capabilities: list[str] | None = None,
) -> ChangeSetPlan | None:
    """Create a change set and wait until it is ready; None when the template changes nothing."""
    body = json.dumps(template)
    if len(body) > MAX_TEMPLATE_BODY_BYTES:
        raise DeployError(
            f"the packaged template is {len(body)} bytes; CloudFormation takes at most "
            f"{MAX_TEMPLATE_BODY_BYTES} in a request"
        )
    status = stack_status(cfn, stack_name)
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "REVIEW_IN_PROGRESS"):
        # A stack that never got created cannot be updated: CloudFormation needs it deleted first.
        cfn.delete_stack(StackName=stack_name)
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=stack_name, WaiterConfig=_waiter_config(poll_seconds, timeout_seconds)
        )
        status = None
    change_set_type: ChangeSetTypeType = "CREATE" if status is None else "UPDATE"
    change_set_name = f"sandbox-{int(time.time() * 1000)}"
    extra: dict[str, Any] = (
        {"Tags": [{"Key": key, "Value": value} for key, value in tags.items()]} if tags else {}
    )
    try:
        cfn.create_change_set(
            StackName=stack_name,
            ChangeSetName=change_set_name,
            ChangeSetType=change_set_type,
            TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=cast("list[CapabilityType]", capabilities) if capabilities else CAPABILITIES,
            **extra,
        )
    except ClientError as error:
        raise DeployError(f"CloudFormation refused the template: {error}") from error
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=stack_name,
            ChangeSetName=change_set_name,
            WaiterConfig=_waiter_config(poll_seconds, timeout_seconds),
        )
    except WaiterError as error:
        change_set = cfn.describe_change_set(StackName=stack_name, ChangeSetName=change_set_name)
        reason = change_set.get("StatusReason", "")
        if any(marker in reason for marker in _NO_CHANGES):
            cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set_name)
            return None
        raise DeployError(f"change set failed: {reason or error}") from error
    changes = read_changes(cfn, stack_name, change_set_name) if with_changes else []
    return ChangeSetPlan(stack_name, change_set_name, change_set_type, changes)


def discard_plan(cfn: CloudFormationClient, plan: ChangeSetPlan) -> None:
    """Delete a change set that will not be executed (and the empty stack a CREATE left)."""
    cfn.delete_change_set(StackName=plan.stack_name, ChangeSetName=plan.name)
    if plan.change_set_type == "CREATE":
        cfn.delete_stack(StackName=plan.stack_name)


def follow_stack(
    cfn: CloudFormationClient,
    stack_name: str,
    on_event: StackEventHandler,
    *,
    poll_seconds: float,
    timeout_seconds: float,
) -> str:
    """Report each new stack event until the stack leaves its IN_PROGRESS state; return the status."""
    newest = next(stack_events(cfn, stack_name), None)
    seen = {newest["EventId"]} if newest else set()

    def check() -> str | None:
        new: dict[str, StackEventTypeDef] = {}
        for event in stack_events(cfn, stack_name):  # newest first: read back to the last one seen
            if event["EventId"] in seen:
                break
            new.setdefault(event["EventId"], event)  # a page may repeat an event another one held
        for event in reversed(new.values()):
            seen.add(event["EventId"])
            on_event(dict(event))
        status = stack_status(cfn, stack_name) or "DELETE_COMPLETE"
        return None if status.endswith("_IN_PROGRESS") else status

    return wait_until(
        check,
        timeout=timeout_seconds,
        what=f"stack {stack_name} to settle",
        interval=poll_seconds,
        max_interval=poll_seconds,
    )


def stack_events(cfn: CloudFormationClient, stack_name: str) -> Iterator[StackEventTypeDef]:
    """The stack's events, newest first, a page at a time as they are read; none for a missing stack."""
    try:
        for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_name):
            yield from page["StackEvents"]
    except ClientError as error:
        if not is_missing_stack(error):
            raise


def execute_plan(
    cfn: CloudFormationClient,
    plan: ChangeSetPlan,
    *,
    on_event: StackEventHandler | None = None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float = 1800,
) -> DeployResult:
    """Execute a change set and wait for the stack, reporting its events when asked."""
    cfn.execute_change_set(StackName=plan.stack_name, ChangeSetName=plan.name)
    if on_event is None:
        waiter = (
            cfn.get_waiter("stack_create_complete")
            if plan.change_set_type == "CREATE"
            else cfn.get_waiter("stack_update_complete")
        )
        try:
            waiter.wait(StackName=plan.stack_name, WaiterConfig=_waiter_config(poll_seconds, timeout_seconds))
        except WaiterError as error:
            raise _deploy_failed(cfn, plan.stack_name) from error
    else:
        status = follow_stack(
            cfn, plan.stack_name, on_event, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds
        )
        if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise _deploy_failed(cfn, plan.stack_name)
    return DeployResult(
        plan.stack_name, True, str(stack_status(cfn, plan.stack_name)), read_outputs(cfn, plan.stack_name)
    )


def _deploy_failed(cfn: CloudFormationClient, stack_name: str) -> DeployError:
    return DeployError(
        f"deploying {stack_name} failed: {first_failure(cfn, stack_name)}",
        hint=f"stack status is {stack_status(cfn, stack_name)}",
    )


def deploy_stack(
    cfn: CloudFormationClient,
    stack_name: str,
    template: dict[str, Any],
    parameters: dict[str, str],
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float = 1800,
) -> DeployResult:
    """Create and execute a change set in one go; a template with no changes is a no-op."""
    plan = plan_change_set(
        cfn,
        stack_name,
        template,
        parameters,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
        with_changes=False,
    )
    if plan is None:
        return unchanged_result(cfn, stack_name)
    return execute_plan(cfn, plan, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)


def delete_stack(
    cfn: CloudFormationClient,
    stack_name: str,
    *,
    on_event: StackEventHandler = lambda _: None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float = 1800,
) -> bool:
    """Delete the stack and wait until it is gone; False when there was none."""
    status = stack_status(cfn, stack_name)
    if status is None:
        return False
    stack_id = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackId"]
    cfn.delete_stack(StackName=stack_name)
    final = follow_stack(cfn, stack_id, on_event, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)
    if final != "DELETE_COMPLETE":
        raise DeployError(
            f"deleting {stack_name} failed: {first_failure(cfn, stack_id)}", hint=f"stack status is {final}"
        )
    return True
