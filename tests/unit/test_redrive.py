"""RedriveExecution's rules (engine_patches.redrive): what is redrivable, where a redrive starts, client tokens."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from sandbox.engine_patches.redrive import (
    MAX_HISTORY_EVENTS,
    REDRIVABLE_PERIOD_SECONDS,
    ClientTokens,
    redrive_execution,
    redrive_fields,
    refusal,
    restart_point,
    seconds_of,
)
from sandbox.waiting import wait_until

NOW = 1_800_000_000.0
STANDARD = {"type": "STANDARD", "definition": "{}"}


def entered(name: str, state_input: Any, kind: str = "Task") -> dict[str, Any]:
    return {
        "type": f"{kind}StateEntered",
        "stateEnteredEventDetails": {"name": name, "input": json.dumps(state_input)},
    }


def exited(name: str, output: Any, kind: str = "Task") -> dict[str, Any]:
    return {
        "type": f"{kind}StateExited",
        "stateExitedEventDetails": {"name": name, "output": json.dumps(output)},
    }


def ended(kind: str = "ExecutionFailed") -> dict[str, Any]:
    return {"type": kind}


def record(status: str = "FAILED", **fields: Any) -> dict[str, Any]:
    return {
        "status": status,
        "startDate": "2027-01-15T08:00:00.000Z",
        "stopDate": "2027-01-15T08:00:01.000Z",
        "events": [{"type": "ExecutionStarted"}, ended()],
        **fields,
    }


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_a_failed_timed_out_or_aborted_standard_execution_is_redrivable(status: str) -> None:
    assert refusal(record(status), STANDARD, NOW) is None


@pytest.mark.parametrize(
    ("changes", "machine", "reason"),
    [
        ({"status": "SUCCEEDED"}, STANDARD, "Execution is SUCCEEDED and cannot be redriven"),
        ({"status": "RUNNING"}, STANDARD, "Execution is RUNNING and cannot be redriven"),
        # status FAILED written, its ExecutionFailed event not yet: its run is still ending it
        ({"events": [{"type": "ExecutionStarted"}]}, STANDARD, "Execution is RUNNING and cannot be redriven"),
        ({}, None, "State machine is in DELETING status"),
        ({"sync": True}, STANDARD, "Execution of an EXPRESS state machine cannot be redriven"),
        ({}, {"type": "EXPRESS"}, "Execution of an EXPRESS state machine cannot be redriven"),
        (
            {"events": [{"type": "TaskScheduled"}] * (MAX_HISTORY_EVENTS - 1) + [ended()]},
            STANDARD,
            "Execution history event limit exceeded",
        ),
        (
            {"startDate": "2025-01-01T00:00:00.000Z"},
            STANDARD,
            "Execution has exceeded the max execution time",
        ),
        ({"stopDate": "2026-12-31T08:00:00.000Z"}, STANDARD, "Execution redrivable period exceeded"),
    ],
)
def test_what_aws_refuses_to_redrive_is_refused_with_its_reason(
    changes: dict[str, Any], machine: dict[str, Any] | None, reason: str
) -> None:
    assert refusal(record(**changes), machine, NOW) == reason


def test_the_redrivable_period_is_fourteen_days_from_the_stop() -> None:
    stopped = record(stopDate="2027-01-15T08:00:00.000Z")
    stop = seconds_of(stopped["stopDate"])
    assert stop is not None
    assert refusal(stopped, STANDARD, stop + REDRIVABLE_PERIOD_SECONDS - 1) is None
    assert (
        refusal(stopped, STANDARD, stop + REDRIVABLE_PERIOD_SECONDS + 1)
        == "Execution redrivable period exceeded"
    )


def test_describe_reports_the_redrive_fields_as_aws_names_them() -> None:
    # GIVEN an execution redriven twice, now failed again; and one that succeeded
    redriven = record(redriveCount=2, redriveDate="2027-01-15T08:00:02.000Z")
    succeeded = record("SUCCEEDED")
    # THEN a redrivable one has no reason, a refused one AWS's reason
    assert redrive_fields(redriven, STANDARD, NOW) == {
        "redriveCount": 2,
        "redriveDate": "2027-01-15T08:00:02.000Z",
        "redriveStatus": "REDRIVABLE",
    }
    assert redrive_fields(succeeded, STANDARD, NOW) == {
        "redriveCount": 0,
        "redriveStatus": "NOT_REDRIVABLE",
        "redriveStatusReason": "Execution is SUCCEEDED and cannot be redriven",
    }
    # AND a Map Run's failed child is redriven by its Map Run
    child = record(mapRunArn="arn:aws:states:us-east-1:000000000000:mapRun:m/r:1")
    assert redrive_fields(child, STANDARD, NOW)["redriveStatus"] == "REDRIVABLE_BY_MAP_RUN"


def test_a_redrive_starts_at_the_state_entered_and_never_exited_with_its_input() -> None:
    events = [
        {"type": "ExecutionStarted"},
        entered("Reserve", {"order": 1}),
        exited("Reserve", {"order": 1, "reserved": True}),
        entered("Charge", {"order": 1, "reserved": True}),
        {"type": "TaskFailed"},
        ended(),
    ]
    name, state_input, completed = restart_point(events)
    assert (name, json.loads(state_input), completed) == ("Charge", {"order": 1, "reserved": True}, "Reserve")


def test_a_state_the_engine_finished_after_the_abort_is_rerun_as_aws_aborted_it() -> None:
    # GIVEN an execution aborted while Wait ran; the engine's run wrote the Wait's exit after the abort
    events = [
        entered("Prepare", {}, "Pass"),
        exited("Prepare", {}, "Pass"),
        entered("Pause", {"a": 1}, "Wait"),
    ]
    events += [ended("ExecutionAborted"), exited("Pause", {"a": 1}, "Wait")]
    # THEN the redrive starts at the Wait
    assert restart_point(events)[0] == "Pause"


def test_after_an_earlier_redrive_the_latest_state_not_completed_is_where_the_next_starts() -> None:
    events = [
        entered("A", {}),
        ended(),
        {"type": "ExecutionRedriven"},
        entered("A", {}),
        exited("A", {"a": 1}),
    ]
    events += [entered("B", {"a": 1}), ended()]
    assert restart_point(events)[:2] == ("B", json.dumps({"a": 1}))


def test_an_execution_that_entered_no_state_has_no_state_to_restart() -> None:
    assert restart_point([{"type": "ExecutionStarted"}, ended()]) == (None, None, None)


def test_a_repeated_client_token_answers_as_the_first_for_fifteen_minutes_and_the_last_ten_are_kept() -> None:
    tokens = ClientTokens()
    arn = "arn:aws:states:us-east-1:000000000000:execution:m:e"
    tokens.remember(arn, "t-0", NOW, "first")
    assert tokens.answer(arn, "t-0", NOW + 60) == "first"
    assert tokens.answer(arn, "t-0", NOW + 15 * 60 + 1) is None
    assert tokens.answer(arn, "t-1", NOW) is None
    assert tokens.answer("arn:aws:states:us-east-1:000000000000:execution:m:other", "t-0", NOW) is None
    for index in range(1, 11):
        tokens.remember(arn, f"t-{index}", NOW, f"date-{index}")
    assert tokens.answer(arn, "t-0", NOW) is None  # pushed out by ten newer ones
    assert tokens.answer(arn, "t-1", NOW) == "date-1"


def test_the_engine_redrives_from_the_failed_state_keeping_the_states_that_succeeded() -> None:
    from ministack.services import stepfunctions as sfn

    # GIVEN a Standard state machine whose Pass succeeds and whose Fail fails, and a failed execution
    name = f"redrive-unit-{uuid.uuid4().hex[:8]}"
    definition = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.prepared", "Next": "Stop"},
            "Stop": {"Type": "Fail", "Error": "Broken", "Cause": "on purpose"},
        },
    }
    machine = json.loads(
        sfn._create_state_machine(
            {
                "name": name,
                "definition": json.dumps(definition),
                "roleArn": "arn:aws:iam::000000000000:role/r",
            }
        )[2]
    )["stateMachineArn"]
    started = json.loads(sfn._start_execution({"stateMachineArn": machine, "input": '{"id": 7}'})[2])
    arn = started["executionArn"]

    def status() -> str | None:
        current = str(sfn._executions[arn]["status"])
        return current if current != "RUNNING" else None

    try:
        assert wait_until(status, timeout=10, what="the execution to fail") == "FAILED"
        # WHEN it is redriven
        answer = redrive_execution(sfn, {"executionArn": arn, "clientToken": "once"})
        assert answer[0] == 200
        assert wait_until(status, timeout=10, what="the redriven run to end") == "FAILED"
        # THEN only the Fail state was entered again, with the input it had
        execution = sfn._executions[arn]
        kinds = [event["type"] for event in execution["events"]]
        assert kinds[kinds.index("ExecutionRedriven") :] == [
            "ExecutionRedriven",
            "FailStateEntered",
            "ExecutionFailed",
        ]
        assert [event["id"] for event in execution["events"]] == list(range(1, len(kinds) + 1))
        again = execution["events"][kinds.index("ExecutionRedriven") + 1]
        assert json.loads(again["stateEnteredEventDetails"]["input"]) == {"id": 7, "prepared": "ready"}
        assert execution["redriveCount"] == 1 and execution["error"] == "Broken"
        # AND an unknown execution is refused as AWS refuses it
        missing = redrive_execution(sfn, {"executionArn": arn + "-missing"})
        assert (missing[0], json.loads(missing[2])["__type"]) == (400, "ExecutionDoesNotExist")
    finally:
        sfn._executions.pop(arn, None)
        sfn._state_machines.pop(machine, None)
