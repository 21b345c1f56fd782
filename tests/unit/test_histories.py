"""Normalized saga histories: placeholders, masks, the diff a person reads, the snapshot check."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import UsageError
from sandbox.histories import (
    HistoryCheck,
    HistoryMismatchError,
    HistoryNotFoundError,
    diff_histories,
    history_path,
    load_history,
    mask_value,
    normalize_history,
    render_diff,
    save_history,
)

ACCOUNT_ARN = "arn:aws:states:us-east-1:123456789012"
DEFINITION = {
    "StartAt": "Reserve",
    "States": {
        "Reserve": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Charge"},
        "Charge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Release"}],
            "Next": "Done",
        },
        "Release": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Failed"},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "OrderFailed"},
    },
}


def lambda_error(error: str, message: str, request_id: str) -> str:
    """A Python handler's error as AWS writes it: with a stack trace and the request id."""
    return json.dumps({"errorMessage": message, "errorType": error, "requestId": request_id,
                       "stackTrace": [f'  File "/var/task/app.py", line {len(message)}, in handler\n']})  # fmt: skip


def lambda_result(payload: Any, request_id: str) -> str:
    return json.dumps({
        "ExecutedVersion": "$LATEST", "Payload": payload, "StatusCode": 200,
        "SdkHttpMetadata": {"HttpHeaders": {"Date": "Sun, 06 Dec 2026 01:25:40 GMT",
                                            "x-amzn-RequestId": request_id}, "HttpStatusCode": 200},
        "SdkResponseMetadata": {"RequestId": request_id},
    })  # fmt: skip


class Events:
    """A history as GetExecutionHistory pages it, written event by event."""

    def __init__(self, start: str = "2026-12-06T01:25:40.100") -> None:
        self.events: list[dict[str, Any]] = []
        self.start = start

    def add(self, kind: str, details: dict[str, Any] | None = None, key: str | None = None) -> Events:
        event: dict[str, Any] = {"id": len(self.events) + 1, "type": kind, "timestamp": self.start}
        if details is not None:
            event[key or f"{kind[0].lower()}{kind[1:]}EventDetails"] = details
        self.events.append(event)
        return self

    def task(self, name: str, data: dict[str, Any], outcomes: Sequence[tuple[str, Any]]) -> dict[str, Any]:
        """A Task state: entered with ``data``, one attempt per outcome (``ok``/``error``); its output."""
        self.add("TaskStateEntered", {"name": name, "input": json.dumps(data)}, "stateEnteredEventDetails")
        output = data
        for outcome, value in outcomes:
            self.add("TaskScheduled", {"resource": "arn:aws:states:::lambda:invoke"})
            if outcome == "ok":
                self.add(
                    "TaskSucceeded", {"output": lambda_result(value, "0f5c4b8e-1d2a-4c3b-9e8f-7a6b5c4d3e2f")}
                )
                output = {**data, name.lower(): value}
            else:
                error, message = value
                cause = lambda_error(error, message, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
                self.add("TaskFailed", {"error": error, "cause": cause})
                output = {**data, "error": {"Error": error, "Cause": cause}}
        self.add("TaskStateExited", {"name": name, "output": json.dumps(output)}, "stateExitedEventDetails")
        return output


def saga(
    name: str,
    *,
    charge: Sequence[tuple[str, Any]] = (("ok", {"status": "CHARGED"}),),
    created: str = "2026-12-06T01:25:40.544430+00:00",
    tracking: str = "TRK-1",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """DescribeExecution and the history of one run of the small saga above."""
    data = {"order": {"orderId": name, "createdAt": created, "updatedAt": created, "trackingId": tracking}}
    events = Events()
    events.add("ExecutionStarted", {"input": json.dumps(data)})
    data = events.task("Reserve", data, [("ok", {"status": "RESERVED", "durationMs": 12})])
    data = events.task("Charge", data, charge)
    is_failed = charge[-1][0] != "ok"
    if is_failed:
        data = events.task("Release", data, [("ok", {"status": "RELEASED"})])
        events.add(
            "FailStateEntered", {"name": "Failed", "input": json.dumps(data)}, "stateEnteredEventDetails"
        )
        events.add("ExecutionFailed", {"error": "OrderFailed", "cause": "a step failed"})
    else:
        events.add(
            "SucceedStateEntered", {"name": "Done", "input": json.dumps(data)}, "stateEnteredEventDetails"
        )
        events.add(
            "SucceedStateExited", {"name": "Done", "output": json.dumps(data)}, "stateExitedEventDetails"
        )
        events.add("ExecutionSucceeded", {"output": json.dumps(data)})
    described = {
        "executionArn": f"{ACCOUNT_ARN}:execution:order-saga:{name}",
        "stateMachineArn": f"{ACCOUNT_ARN}:stateMachine:order-saga",
        "name": name,
        "status": "FAILED" if is_failed else "SUCCEEDED",
        "startDate": "2026-12-06T01:25:40.100+00:00",
        "stopDate": "2026-12-06T01:25:41.900+00:00",
        "input": events.events[0]["executionStartedEventDetails"]["input"],
        "output": None if is_failed else json.dumps(data),
        "error": "OrderFailed" if is_failed else None,
        "cause": "a step failed" if is_failed else None,
    }
    return described, events.events


def history(name: str, masks: Sequence[str] = (), injections: Any = None, **run: Any) -> dict[str, Any]:
    described, events = saga(name, **run)
    return normalize_history(described, events, state_machine="OrderSaga", definition=DEFINITION,
                             injections=injections, masks=masks)  # fmt: skip


DECLINED = (("error", ("PaymentDeclinedError", "charge of 12000 declined")),)


def test_the_same_scenario_gives_the_same_history_whatever_its_ids_and_times() -> None:
    # GIVEN two runs of one scenario: other execution names, request ids, timestamps
    first = history("5e0d3c4b-2a19-4f8e-8d7c-6b5a49382716", charge=DECLINED)
    second = history("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", charge=DECLINED,
                     created="2027-01-01T00:00:00.000001+00:00")  # fmt: skip
    # THEN their histories are equal, and nothing volatile is left in them
    assert first == second
    text = json.dumps(first)
    assert "5e0d3c4b" not in text and "2026-12-06" not in text and "123456789012" not in text
    assert first["input"]["order"]["orderId"] == "<execution-name>"
    # AND the same timestamp got the same placeholder (createdAt = updatedAt)
    order = first["states"][0]["input"]["order"]
    assert order["createdAt"] == order["updatedAt"] == "<timestamp-1>"
    # AND the engine's SDK metadata, stack trace and request id are gone; durations are hidden
    charge = first["states"][1]
    assert charge["attempts"] == [
        {"status": "FAILED", "error": "PaymentDeclinedError",
         "cause": {"errorType": "PaymentDeclinedError", "errorMessage": "charge of 12000 declined"}}
    ]  # fmt: skip
    assert charge["output"]["error"]["Cause"] == charge["attempts"][0]["cause"]
    assert first["states"][0]["output"]["reserve"]["durationMs"] == "<duration>"
    assert "SdkHttpMetadata" not in text and "stackTrace" not in text


def test_a_history_says_states_attempts_catches_and_compensations() -> None:
    # GIVEN a run whose charge fails twice transiently, then for good
    run = history(
        "order-0001-abcdef",
        charge=[("error", ("TransientStepError", "busy")), ("error", ("PaymentDeclinedError", "no"))],
        injections=[{"rule": "f7", "kind": "error", "target": "Charge", "state": "Charge", "attempt": 1,
                     "error": "TransientStepError", "at": 123.4}],
    )  # fmt: skip
    # THEN the history names each state, its attempts, the Catch and the compensation
    assert [(s["name"], s["status"], s["isCompensation"]) for s in run["states"]] == [
        ("Reserve", "SUCCEEDED", False), ("Charge", "FAILED", False),
        ("Release", "SUCCEEDED", True), ("Failed", "FAILED", False)]  # fmt: skip
    assert [a["error"] for a in run["states"][1]["attempts"]] == [
        "TransientStepError",
        "PaymentDeclinedError",
    ]
    assert run["states"][1]["catch"] == {
        "error": "PaymentDeclinedError",
        "matched": "States.ALL",
        "next": "Release",
    }
    assert run["compensations"] == ["Release"]
    # AND the injected fault, without its rule's id or time
    assert run["injectedFaults"] == [
        {"state": "Charge", "attempt": 1, "kind": "error", "target": "Charge", "error": "TransientStepError"}
    ]
    assert run["status"] == "FAILED" and run["error"] == "OrderFailed"


def test_masks_hide_the_paths_a_user_names_everywhere_in_the_data() -> None:
    # GIVEN two runs whose tracking ids differ
    first = history("order-0001-abcdef", ["$..trackingId"], tracking="TRK-AAAA")
    second = history("order-0002-abcdef", ["$..trackingId"], tracking="TRK-BBBB")
    # THEN with the field masked they are the same
    assert first == second
    assert first["input"]["order"]["trackingId"] == "<masked>"
    assert first["masks"] == ["$..trackingId"]
    # AND without the mask they differ there
    assert history("order-0001-abcdef", tracking="TRK-AAAA") != history(
        "order-0002-abcdef", tracking="TRK-BBBB"
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.order.id", {"order": {"id": "<masked>", "n": 1}, "items": [{"id": 1}, {"id": 2}]}),
        ("$.items[*].id", {"order": {"id": "o", "n": 1}, "items": [{"id": "<masked>"}, {"id": "<masked>"}]}),
        ("$.items[1].id", {"order": {"id": "o", "n": 1}, "items": [{"id": 1}, {"id": "<masked>"}]}),
        ("$..id", {"order": {"id": "<masked>", "n": 1}, "items": [{"id": "<masked>"}, {"id": "<masked>"}]}),
        ("$['order']", {"order": "<masked>", "items": [{"id": 1}, {"id": 2}]}),
        ("$.missing.path", {"order": {"id": "o", "n": 1}, "items": [{"id": 1}, {"id": 2}]}),
    ],
)
def test_mask_paths(path: str, expected: Any) -> None:
    value = {"order": {"id": "o", "n": 1}, "items": [{"id": 1}, {"id": 2}]}
    assert mask_value(value, [path]) == expected


@pytest.mark.parametrize("path", ["order.id", "$", "$.a[", "$.a b"])
def test_a_mask_that_is_not_a_json_path_is_refused_with_a_hint(path: str) -> None:
    with pytest.raises(UsageError) as raised:
        mask_value({}, [path])
    assert raised.value.hint


def test_diff_says_an_extra_retry_and_the_error_it_met() -> None:
    # GIVEN a golden run, and one whose charge needed a retry
    expected = history("order-0001-abcdef")
    actual = history(
        "order-0002-abcdef", charge=[("error", ("TransientStepError", "busy")), ("ok", {"status": "CHARGED"})]
    )
    # WHEN they are compared
    differences = diff_histories(expected, actual)
    text = render_diff(differences, expected="histories/happy.json", actual="execution x")
    # THEN the diff names the extra retry and what the first attempt met, nothing else
    assert [d.kind for d in differences] == ["attempt", "attempts"]
    assert 'Charge attempt 1: failed with TransientStepError ("busy"), expected succeeded' in text
    assert "Charge: 2 attempts, expected 1 (1 extra retry; extra: attempt 2 succeeded)" in text


def test_diff_says_a_path_that_diverged_and_an_error_that_changed() -> None:
    # GIVEN a golden happy run, and a run whose charge was declined
    expected = history("order-0001-abcdef")
    actual = history("order-0002-abcdef", charge=DECLINED)
    text = render_diff(diff_histories(expected, actual), expected="a", actual="b")
    # THEN the diff says where the path diverged and how the execution ended instead
    assert "path diverged after Charge: Release → Failed, expected Done" in text
    assert "execution status: FAILED, expected SUCCEEDED" in text
    assert "Charge attempt 1: failed with PaymentDeclinedError" in text
    # AND a different business error is an error that changed, not a path
    other = history("order-0003-abcdef", charge=(("error", ("CardExpiredError", "expired")),))
    changed = diff_histories(actual, other)
    assert {d.kind for d in changed} >= {"attempt", "catch"}
    assert "path" not in {d.kind for d in changed}


def test_diff_says_an_output_that_changed_once_not_in_every_state_after_it() -> None:
    expected = history("order-0001-abcdef")
    actual = history("order-0002-abcdef", charge=(("ok", {"status": "CHARGED", "amount": "49.00"}),))
    differences = diff_histories(expected, actual)
    assert [(d.kind, d.state, d.path) for d in differences] == [("output", "Charge", "$.charge.amount")]
    assert differences[0].message == 'Charge output $.charge.amount: "49.00", added'


def test_faults_are_compared_only_where_both_engines_tell_them() -> None:
    fault = [
        {"rule": "f1", "kind": "error", "target": "Charge", "state": "Charge", "attempt": 1, "error": None}
    ]
    local = history("order-0001-abcdef", injections=fault)
    aws = history("order-0002-abcdef", injections=None)
    assert diff_histories(local, aws) == []
    assert [d.kind for d in diff_histories(local, history("order-0003-abcdef", injections=[]))] == ["faults"]


class FakeReader:
    """Histories of made-up executions, by name."""

    where = "a fake engine"

    def __init__(self, runs: dict[str, dict[str, Any]]) -> None:
        self.runs = runs

    def find(self, ref: str) -> str:
        return f"{ACCOUNT_ARN}:execution:order-saga:{ref}"

    def read(self, execution_arn: str, masks: Sequence[str] = ()) -> dict[str, Any]:
        return history(execution_arn.rsplit(":", 1)[1], masks, **self.runs[execution_arn.rsplit(":", 1)[1]])


def test_the_snapshot_check_fails_without_a_golden_then_records_and_passes(tmp_path: Path) -> None:
    reader = FakeReader({"run-00000001": {}, "run-00000002": {"charge": DECLINED}})
    check = HistoryCheck(reader, tmp_path)
    # WHEN there is no saved history: it fails, with the flag that records it
    with pytest.raises(HistoryMismatchError, match="--sandbox-update-histories"):
        check("run-00000001", "happy")
    # WHEN updating: it records it, with the masks given
    HistoryCheck(reader, tmp_path, update=True)("run-00000001", "happy", mask=["$..trackingId"])
    assert load_history(tmp_path / "happy.json")["masks"] == ["$..trackingId"]
    # THEN the same scenario passes (with the saved masks), another fails with a readable diff
    check("run-00000001", "happy")
    with pytest.raises(HistoryMismatchError) as raised:
        check("run-00000002", "happy")
    message = str(raised.value)
    assert "path diverged after Charge: Release → Failed, expected Done" in message
    assert "re-record it: pytest --sandbox-update-histories" in message


def test_saved_files_are_stable_and_names_are_checked(tmp_path: Path) -> None:
    document = history("order-0001-abcdef")
    path = save_history(document, history_path(tmp_path, "happy"))
    first = path.read_text()
    save_history(load_history(path), path)
    assert path.read_text() == first and first.endswith("}\n")
    with pytest.raises(UsageError):
        history_path(tmp_path, "../escape")
    with pytest.raises(HistoryNotFoundError) as missing:
        load_history(tmp_path / "nope.json")
    assert "sandbox history save" in (missing.value.hint or "")
