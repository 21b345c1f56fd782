"""Finding a stack's state machines and reading an execution's input, against stubbed engine answers."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from sandbox.errors import UsageError
from sandbox.executions import (
    StateMachineNotFoundError,
    StateMachineRef,
    entered_states,
    read_input,
    resolve_state_machine,
    state_machines,
)

MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:"


def resource(logical: str, physical: str, kind: str) -> dict[str, Any]:
    return {"LogicalResourceId": logical, "PhysicalResourceId": physical, "ResourceType": kind,
            "LastUpdatedTimestamp": datetime(2026, 1, 1), "ResourceStatus": "CREATE_COMPLETE"}  # fmt: skip


class FakeStack:
    """A LocalStack whose CloudFormation client answers list_stack_resources from a Stubber."""

    def __init__(self, client_factory: Any, resources: list[dict[str, Any]], calls: int = 1):
        self.cfn = client_factory("cloudformation")
        self.stubber = Stubber(self.cfn)
        for _ in range(calls):
            self.stubber.add_response(
                "list_stack_resources", {"StackResourceSummaries": resources}, {"StackName": "shop"}
            )
        self.stubber.activate()

    def client(self, service: str, region: str) -> Any:
        assert service == "cloudformation"
        return self.cfn


TWO = [
    resource("OrderSaga", f"{MACHINE_ARN}shop-order-saga", "AWS::StepFunctions::StateMachine"),
    resource("BookFunction", "shop-BookFunction-1", "AWS::Lambda::Function"),
    resource("RefundFlow", f"{MACHINE_ARN}shop-refunds", "AWS::StepFunctions::StateMachine"),
]


def test_the_stack_s_state_machines_are_listed_with_logical_id_name_and_arn(client_factory: Any) -> None:
    stack = FakeStack(client_factory, TWO)
    assert state_machines(stack, "us-east-1", "shop") == [  # type: ignore[arg-type]
        StateMachineRef("OrderSaga", "shop-order-saga", f"{MACHINE_ARN}shop-order-saga"),
        StateMachineRef("RefundFlow", "shop-refunds", f"{MACHINE_ARN}shop-refunds"),
    ]


@pytest.mark.parametrize("wanted", ["RefundFlow", "shop-refunds", f"{MACHINE_ARN}shop-refunds"])
def test_a_state_machine_is_found_by_logical_id_name_or_arn(client_factory: Any, wanted: str) -> None:
    stack = FakeStack(client_factory, TWO)
    assert resolve_state_machine(stack, "us-east-1", "shop", wanted).logical_id == "RefundFlow"  # type: ignore[arg-type]


def test_an_unknown_state_machine_lists_the_known_ones(client_factory: Any) -> None:
    stack = FakeStack(client_factory, TWO)
    with pytest.raises(StateMachineNotFoundError, match="has no state machine 'Nope'") as raised:
        resolve_state_machine(stack, "us-east-1", "shop", "Nope")  # type: ignore[arg-type]
    assert raised.value.hint == "choose one of: OrderSaga, RefundFlow"


def test_without_a_name_the_only_state_machine_is_taken_and_several_must_be_named(
    client_factory: Any,
) -> None:
    only = FakeStack(client_factory, TWO[:2])
    assert resolve_state_machine(only, "us-east-1", "shop", None).name == "shop-order-saga"  # type: ignore[arg-type]
    several = FakeStack(client_factory, TWO)
    with pytest.raises(StateMachineNotFoundError, match="has 2 state machines: name one"):
        resolve_state_machine(several, "us-east-1", "shop", None)  # type: ignore[arg-type]
    none = FakeStack(client_factory, TWO[1:2])
    with pytest.raises(StateMachineNotFoundError, match="has no state machine"):
        resolve_state_machine(none, "us-east-1", "shop", None)  # type: ignore[arg-type]


def test_input_is_json_or_a_json_file(tmp_path: Path) -> None:
    assert read_input('{"cartId": "c-1"}') == {"cartId": "c-1"}
    event = tmp_path / "event.json"
    event.write_text(json.dumps([1, 2]))
    assert read_input(f"@{event}") == [1, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{cartId: 1}", "--input is not JSON"),
        ("@/no/such/event.json", "--input @/no/such/event.json: cannot read"),
    ],
)
def test_input_that_is_not_json_or_a_missing_file_is_one_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        read_input(text)


def test_entered_states_keep_order_and_repeats() -> None:
    history = [
        {"id": 1, "type": "ExecutionStarted"},
        {"id": 2, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Book"}},
        {"id": 3, "type": "TaskStateExited", "stateExitedEventDetails": {"name": "Book"}},
        {"id": 4, "type": "ChoiceStateEntered", "stateEnteredEventDetails": {"name": "Again"}},
        {"id": 5, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Book"}},
    ]
    assert entered_states(history) == ["Book", "Again", "Book"]
