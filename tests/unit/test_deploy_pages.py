"""CloudFormation reads that span pages, and a missing stack told by its error code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from sandbox.deploy import first_failure, follow_stack, read_changes, read_outputs, stack_status
from sandbox.errors import StackNotFoundError

STACK = "saga-sandbox"
CHANGE_SET = "sandbox-1"
START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def cfn(client_factory: Any) -> Iterator[Any]:
    client = client_factory("cloudformation")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def event(number: int, logical_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
    """Stack event ``number`` (a higher number happened later)."""
    found: dict[str, Any] = {
        "StackId": "stack-arn",
        "EventId": f"e{number}",
        "StackName": STACK,
        "LogicalResourceId": logical_id,
        "ResourceType": "AWS::CloudFormation::Stack" if logical_id == STACK else "AWS::SQS::Queue",
        "Timestamp": START + timedelta(seconds=number),
        "ResourceStatus": status,
    }
    if reason:
        found["ResourceStatusReason"] = reason
    return found


def expect_events(cfn: Any, pages: list[list[dict[str, Any]]], *, is_more_left: bool = False) -> None:
    """DescribeStackEvents answering ``pages`` (each newest first), linked by NextToken.

    ``is_more_left``: the last page names a next one that is not stubbed (reading it fails the test).
    """
    for index, page in enumerate(pages):
        response: dict[str, Any] = {"StackEvents": page}
        params: dict[str, Any] = {"StackName": STACK}
        if index + 1 < len(pages) or is_more_left:
            response["NextToken"] = f"t{index + 1}"
        if index:
            params["NextToken"] = f"t{index}"
        cfn.stubber.add_response("describe_stack_events", response, params)


def expect_status(cfn: Any, status: str) -> None:
    stack = {"StackName": STACK, "StackStatus": status, "CreationTime": START}
    cfn.stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": STACK})


def test_every_page_of_a_change_set_is_read(cfn: Any) -> None:
    # GIVEN a change set whose changes come in two pages
    def change(logical_id: str) -> dict[str, Any]:
        detail = {"Action": "Add", "LogicalResourceId": logical_id, "ResourceType": "AWS::SQS::Queue"}
        return {"Type": "Resource", "ResourceChange": detail}

    base = {"StackName": STACK, "ChangeSetName": CHANGE_SET}
    cfn.stubber.add_response("describe_change_set", {"Changes": [change("A")], "NextToken": "t1"}, base)
    cfn.stubber.add_response("describe_change_set", {"Changes": [change("B")]}, {**base, "NextToken": "t1"})
    # WHEN they are read THEN both pages are in the plan, in order
    changes = read_changes(cfn, STACK, CHANGE_SET)
    assert [(c.action, c.logical_id, c.replacement) for c in changes] == [
        ("Add", "A", "-"),
        ("Add", "B", "-"),
    ]


def test_following_a_stack_reports_every_new_event_across_pages_once_oldest_first(cfn: Any) -> None:
    # GIVEN a stack whose newest event, when following starts, is e1
    expect_events(cfn, [[event(1, STACK, "UPDATE_COMPLETE")]])
    # AND a first poll finding three new events over two pages (the second repeats one)
    expect_events(
        cfn,
        [
            [event(4, "Queue", "UPDATE_COMPLETE"), event(3, "Queue", "UPDATE_IN_PROGRESS")],
            [
                event(3, "Queue", "UPDATE_IN_PROGRESS"),
                event(2, STACK, "UPDATE_IN_PROGRESS"),
                event(1, STACK, "UPDATE_COMPLETE"),
            ],
        ],
    )
    expect_status(cfn, "UPDATE_IN_PROGRESS")
    # AND a second poll finding one more, then the stack done
    expect_events(cfn, [[event(5, STACK, "UPDATE_COMPLETE"), event(4, "Queue", "UPDATE_COMPLETE")]])
    expect_status(cfn, "UPDATE_COMPLETE")
    reported: list[str] = []
    # WHEN the stack is followed
    final = follow_stack(
        cfn, STACK, lambda e: reported.append(e["EventId"]), poll_seconds=0.001, timeout_seconds=5
    )
    # THEN each new event is reported once, oldest first, and nothing older than the start
    assert reported == ["e2", "e3", "e4", "e5"]
    assert final == "UPDATE_COMPLETE"


def test_the_first_failure_of_the_latest_operation_is_found_on_a_later_page(cfn: Any) -> None:
    # GIVEN an update whose first failure is on the second page, after an older update that failed too
    expect_events(
        cfn,
        [
            [event(9, STACK, "UPDATE_ROLLBACK_COMPLETE"), event(8, "Other", "UPDATE_FAILED", "cancelled")],
            [
                event(7, "Queue", "UPDATE_FAILED", "queue name taken"),
                event(6, STACK, "UPDATE_IN_PROGRESS"),
                event(5, "Queue", "UPDATE_FAILED", "an older failure"),
                event(4, STACK, "UPDATE_IN_PROGRESS"),
            ],
        ],
        is_more_left=True,
    )
    # WHEN the failure is named THEN it is the latest operation's first (and no older page is read)
    assert first_failure(cfn, STACK) == "Queue (AWS::SQS::Queue): queue name taken"


def test_a_missing_stack_is_told_by_its_error_code_not_its_message(cfn: Any) -> None:
    # GIVEN CloudFormation's ValidationError for a stack, worded in any way
    cfn.stubber.add_client_error("describe_stacks", "ValidationError", "Stack [saga-sandbox] not found")
    assert stack_status(cfn, STACK) is None
    cfn.stubber.add_client_error("describe_stacks", "ValidationError", "no such stack")
    with pytest.raises(StackNotFoundError):
        read_outputs(cfn, STACK)
    # AND another error whose message happens to say "does not exist"
    cfn.stubber.add_client_error(
        "describe_stacks", "AccessDenied", "role does not exist", http_status_code=403
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        stack_status(cfn, STACK)
