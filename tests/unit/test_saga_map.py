"""A saga's failure map, read from the definition alone: routes, paths, pairings and findings."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.saga_commands import register
from sandbox.saga_map import (
    CatchRoute,
    DefinitionError,
    Finding,
    SagaMap,
    build_saga_map,
    load_definition,
    name_undoes,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO_ASL = PROJECT_DIR / "state_machines" / "order_saga.asl.json"
TRIP_ASL = PROJECT_DIR / "examples" / "trip-booking" / "statemachine" / "booking.asl.json"


def task(function: str, action: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Lambda task as SAM projects write one, with an optional ``action`` in its payload."""
    payload = {"action": action} if action else {"order.$": "$.order"}
    parameters = {"FunctionName": function, "Payload": payload}
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": parameters, **fields}


def catch_all(target: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": target}]


def route(saga: SagaMap, step: str, error: str) -> CatchRoute:
    """The Catch route of ``step`` whose ErrorEquals holds ``error``."""
    return next(route for route in saga.step(step).catches if error in route.error_equals)


def findings(saga: SagaMap, kind: str) -> list[Finding]:
    return [finding for finding in saga.findings if finding.kind == kind]


# ------------------------------------------------------------------ the demo and the example


def test_demo_map_pairs_each_compensation_by_its_function_and_action() -> None:
    # GIVEN the demo's order saga
    saga = build_saga_map(load_definition(DEMO_ASL))
    # THEN its effect steps are the forward path and each compensation is paired by function + action
    assert saga.effect_steps == ("ReserveInventory", "ChargePayment", "CreateShipment", "MarkOrderCompleted")
    assert {(p.compensation, p.step, p.reason) for p in saga.pairings} == {
        ("ReleaseInventory", "ReserveInventory", "same function, action release"),
        ("RefundPayment", "ChargePayment", "same function, action refund"),
        ("CancelShipment", "CreateShipment", "same function, action cancel"),
    }
    assert saga.step("RefundPayment").role == "compensation"
    # AND a step's Retry rule is read with every field
    (rule,) = saga.step("ReserveInventory").retries
    assert (rule.max_attempts, rule.interval_seconds, rule.backoff_rate) == (3, 1.0, 2.0)
    assert (rule.max_delay_seconds, rule.jitter_strategy) == (10, "FULL")
    assert "States.Timeout" in rule.error_equals


def test_demo_payment_failure_undoes_inventory_and_an_uncertain_one_the_charge_too() -> None:
    # GIVEN the demo's order saga
    saga = build_saga_map(load_definition(DEMO_ASL))
    # WHEN payment is declined (a business error: the charge did nothing)
    (declined,) = route(saga, "ChargePayment", "PaymentDeclinedError").paths
    # THEN inventory is released and the execution fails
    assert declined.states == ("ReleaseInventory", "MarkOrderFailed", "OrderFailed")
    assert [p.step for p in declined.undoes] == ["ReserveInventory"]
    assert (declined.ends_in, declined.terminal, declined.leaves) == ("fail", "OrderFailed", ())
    # AND any other failure refunds the charge itself before releasing, in reverse order
    (uncertain,) = route(saga, "ChargePayment", "States.ALL").paths
    assert [p.step for p in uncertain.undoes] == ["ChargePayment", "ReserveInventory"]


def test_demo_findings_are_the_deliberate_self_compensations_and_the_final_steps_partial_catch() -> None:
    # GIVEN the demo's order saga WHEN it is mapped
    saga = build_saga_map(load_definition(DEMO_ASL))
    # THEN nothing earlier is left in place by a Catch, and no Catch ends in success
    assert findings(saga, "uncompensated") == []
    assert findings(saga, "swallowed") == []
    # AND each step's catch-all undoes the step itself, said to be deliberate for an uncertain failure
    unrun = findings(saga, "compensates-unrun")
    assert [f.state for f in unrun] == ["ReserveInventory", "ChargePayment", "CreateShipment"]
    assert all("itself" in f.message and "uncertain failure" in f.message for f in unrun)
    # AND the last step catches one error only: any other leaves every effect in place
    (partial,) = findings(saga, "no-catch")
    assert partial.state == "MarkOrderCompleted"
    assert "catches only InvalidTransitionError" in partial.message
    assert "ReserveInventory, ChargePayment, CreateShipment in place" in partial.message


def test_trip_booking_pairs_compensations_by_name_and_flags_the_notification_without_catch() -> None:
    # GIVEN the example project's trip booking saga (one function per step)
    saga = build_saga_map(load_definition(TRIP_ASL))
    # THEN compensations are paired by their names
    assert [(p.compensation, p.step, p.reason) for p in saga.pairings] == [
        ("CancelFlight", "ReserveFlight", "name"),
        ("CancelHotel", "ReserveHotel", "name"),
        ("RefundCard", "ChargeCard", "name"),
    ]
    # AND a declined card undoes hotel then flight, and the execution fails at TripFailed
    (declined,) = route(saga, "ChargeCard", "CardDeclinedError").paths
    assert [p.step for p in declined.undoes] == ["ReserveHotel", "ReserveFlight"]
    assert (declined.terminal, declined.ends_in, declined.leaves) == ("TripFailed", "fail", ())
    # AND the SNS notification after the bookings has no Catch: a reviewer would ask about it
    assert [(f.kind, f.state) for f in saga.findings if f.kind != "compensates-unrun"] == [
        ("no-catch", "NotifyTripBooked")
    ]
    assert saga.step("NotifyTripBooked").function is None


# ------------------------------------------------------------------ each finding, by hand


def test_a_catch_that_skips_an_earlier_compensation_leaves_that_effect_uncompensated() -> None:
    # GIVEN stock is reserved, then a failed charge goes straight to the Fail state
    saga = build_saga_map(
        {
            "StartAt": "ReserveStock",
            "States": {
                "ReserveStock": task("stock", "reserve", Next="ChargeCard", Catch=catch_all("Failed")),
                "ChargeCard": task("card", "charge", Next="Done", Catch=catch_all("Failed")),
                "ReleaseStock": task("stock", "release", Next="Failed"),
                "Done": {"Type": "Succeed"},
                "Failed": {"Type": "Fail"},
            },
        }
    )
    # THEN the charge's failure path leaves the reservation in place
    (path,) = route(saga, "ChargeCard", "States.ALL").paths
    assert path.leaves == ("ReserveStock",)
    (finding,) = findings(saga, "uncompensated")
    assert finding.state == "ChargeCard"
    assert "leaves ReserveStock in place" in finding.message


def test_a_compensation_of_a_later_step_that_never_ran_is_flagged() -> None:
    # GIVEN a payment failure routed into the shipment's cancellation, before any shipment ran
    saga = build_saga_map(
        {
            "StartAt": "ChargePayment",
            "States": {
                "ChargePayment": task("pay", Next="CreateShipment", Catch=catch_all("CancelShipment")),
                "CreateShipment": task("ship", Next="Done", Catch=catch_all("CancelShipment")),
                "CancelShipment": task("cancel-ship", Next="RefundPayment"),
                "RefundPayment": task("refund", Next="Failed"),
                "Done": {"Type": "Succeed"},
                "Failed": {"Type": "Fail"},
            },
        }
    )
    # THEN the map says the cancellation undoes a step that has not run on that path
    messages = [f.message for f in findings(saga, "compensates-unrun") if f.state == "ChargePayment"]
    assert any("CancelShipment undoes CreateShipment, which has not run" in m for m in messages)


def test_a_catch_that_ends_in_success_is_swallowed() -> None:
    # GIVEN a step whose failure only logs it and then ends the execution normally
    saga = build_saga_map(
        {
            "StartAt": "Charge",
            "States": {
                "Charge": task("pay", End=True, Catch=catch_all("LogFailure")),
                "LogFailure": {"Type": "Pass", "End": True},
            },
        }
    )
    # THEN the path ends in success and is flagged as swallowed
    (path,) = route(saga, "Charge", "States.ALL").paths
    assert (path.states, path.ends_in, path.is_swallowed) == (("LogFailure",), "success", True)
    (finding,) = findings(saga, "swallowed")
    assert "SUCCEEDED after a failure" in finding.message


def test_a_step_after_an_effect_with_no_catch_is_flagged_and_the_first_step_is_not() -> None:
    # GIVEN two effect steps without any Catch
    saga = build_saga_map(
        {
            "StartAt": "Reserve",
            "States": {"Reserve": task("stock", Next="Charge"), "Charge": task("pay", End=True)},
        }
    )
    # THEN only the second is flagged: a failure there leaves the first in place
    assert [(f.kind, f.state) for f in saga.findings] == [("no-catch", "Charge")]
    assert "has no Catch" in saga.findings[0].message
    assert saga.step("Charge").catches == ()


def test_a_choice_after_a_catch_lists_each_branch_as_its_own_path() -> None:
    # GIVEN a failed charge that refunds only when the charge went through (a Choice), then releases
    saga = build_saga_map(
        {
            "StartAt": "ReserveStock",
            "States": {
                "ReserveStock": task("stock", "reserve", Next="ChargeCard"),
                "ChargeCard": task("card", "charge", Next="Done", Catch=catch_all("WasCharged")),
                "WasCharged": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.charged", "BooleanEquals": True, "Next": "RefundCard"}],
                    "Default": "ReleaseStock",
                },
                "RefundCard": task("card", "refund", Next="ReleaseStock"),
                "ReleaseStock": task("stock", "release", Next="Failed"),
                "Done": {"Type": "Succeed"},
                "Failed": {"Type": "Fail"},
            },
        }
    )
    # THEN both branches are paths (Default first), and each undoes the reservation
    paths = route(saga, "ChargeCard", "States.ALL").paths
    assert [path.states for path in paths] == [
        ("WasCharged", "ReleaseStock", "Failed"),
        ("WasCharged", "RefundCard", "ReleaseStock", "Failed"),
    ]
    assert all(path.leaves == () and path.ends_in == "fail" for path in paths)
    assert [p.step for p in paths[1].undoes] == ["ChargeCard", "ReserveStock"]


def test_a_loop_after_a_catch_ends_its_path_and_a_polling_loop_is_not_a_way_out() -> None:
    # GIVEN a refund that is polled until done, and a step whose Catch tries it again
    saga = build_saga_map(
        {
            "StartAt": "Charge",
            "States": {
                "Charge": task("pay", Next="Ship", Catch=catch_all("Refund")),
                "Refund": task("refund", Next="WaitForRefund"),
                "WaitForRefund": {"Type": "Wait", "Seconds": 5, "Next": "IsRefunded"},
                "IsRefunded": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.refunded", "BooleanEquals": True, "Next": "Failed"}],
                    "Default": "WaitForRefund",
                },
                "Ship": task("ship", End=True, Catch=catch_all("Ship")),
                "Failed": {"Type": "Fail"},
            },
        }
    )
    # THEN the refund's path ends at the Fail state, the poll's way back is not listed
    (refund,) = route(saga, "Charge", "States.ALL").paths
    assert (refund.states, refund.ends_in) == (("Refund", "WaitForRefund", "IsRefunded", "Failed"), "fail")
    # AND a Catch back into the step itself is a path that loops, not a swallowed failure
    (again,) = route(saga, "Ship", "States.ALL").paths
    assert (again.states, again.terminal, again.ends_in) == ((), "Ship", "loop")
    assert findings(saga, "swallowed") == []


def test_the_happy_path_takes_the_choice_branch_that_can_succeed() -> None:
    # GIVEN a validation Choice whose Default rejects the input
    saga = build_saga_map(
        {
            "StartAt": "IsValid",
            "States": {
                "IsValid": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "BookHotel"}],
                    "Default": "Rejected",
                },
                "BookHotel": task("hotel", End=True),
                "Rejected": {"Type": "Fail"},
            },
        }
    )
    # THEN the happy path goes on to the booking, which is the effect step
    assert saga.happy_path == ("IsValid", "BookHotel")
    assert saga.effect_steps == ("BookHotel",)


def test_tasks_in_parallel_branches_are_named_alone_and_fail_through_the_parallels_catch() -> None:
    # GIVEN hotel and flight booked in parallel, undone by a Parallel of compensations, then a payment
    saga = build_saga_map(
        {
            "StartAt": "BookAll",
            "States": {
                "BookAll": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "BookHotel", "States": {"BookHotel": task("hotel", "book", End=True)}},
                        {"StartAt": "BookFlight", "States": {"BookFlight": task("flight", "book", End=True)}},
                    ],
                    "Catch": catch_all("UndoAll"),
                    "Next": "Pay",
                },
                "Pay": task("pay", Catch=catch_all("UndoAll"), Next="Done"),
                "UndoAll": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "CancelHotel",
                            "States": {"CancelHotel": task("hotel", "cancel", End=True)},
                        },
                        {
                            "StartAt": "CancelFlight",
                            "States": {"CancelFlight": task("flight", "cancel", End=True)},
                        },
                    ],
                    "Next": "Failed",
                },
                "Done": {"Type": "Succeed"},
                "Failed": {"Type": "Fail"},
            },
        }
    )
    # THEN nested tasks are steps of their own, and a branch sibling counts as earlier (it runs alongside)
    assert saga.effect_steps == ("BookHotel", "BookFlight", "Pay")
    assert saga.step("BookHotel").earlier == ("BookFlight",)
    # AND a failed booking goes through the Parallel's Catch, whose compensations run inside a Parallel
    (through,) = saga.step("BookFlight").catches
    assert through.via == "BookAll"
    (path,) = through.paths
    assert path.states == ("UndoAll", "CancelHotel", "CancelFlight", "Failed")
    # AND a failed payment undoes both bookings: nothing is left uncompensated
    (paid,) = route(saga, "Pay", "States.ALL").paths
    assert [p.step for p in paid.undoes] == ["BookHotel", "BookFlight"]
    assert findings(saga, "uncompensated") == []


@pytest.mark.parametrize(
    ("compensation", "step", "expected"),
    [
        ("RefundPayment", "ChargePayment", True),
        ("CancelHotel", "BookHotel", True),
        ("UndoChargeCard", "ChargeCard", True),
        ("cancel_hotel", "book_hotel", True),
        ("RollBackOrder", "PlaceOrder", True),
        ("CancelFlight", "BookHotel", False),
        ("MarkOrderFailed", "MarkOrderCompleted", False),
    ],
)
def test_a_compensations_name_pairs_it_with_a_step_of_the_same_noun(
    compensation: str, step: str, expected: bool
) -> None:
    assert name_undoes(compensation, step) is expected


def test_the_map_as_json_names_every_part() -> None:
    # GIVEN the demo's map WHEN it is written as JSON
    document = json.loads(json.dumps(build_saga_map(load_definition(DEMO_ASL)).to_json()))
    # THEN scripts find the steps, their routes and paths, the pairings and the findings
    assert set(document) == {"startAt", "happyPath", "effectSteps", "compensations", "steps", "findings"}
    charge = next(step for step in document["steps"] if step["state"] == "ChargePayment")
    assert charge["role"] == "effect" and charge["earlierEffects"] == ["ReserveInventory"]
    assert charge["retry"][0]["jitterStrategy"] == "FULL"
    assert {"errorEquals", "next", "via", "paths"} <= set(charge["catch"][0])
    assert {"states", "terminal", "endsIn", "undoes", "leavesInPlace"} == set(charge["catch"][0]["paths"][0])


def test_a_yaml_definition_is_read_like_a_json_one(tmp_path: Path) -> None:
    # GIVEN a SAM project's .asl.yaml
    path = tmp_path / "saga.asl.yaml"
    path.write_text(
        "StartAt: Book\nStates:\n  Book:\n    Type: Task\n    Resource: ${BookFunctionArn}\n    End: true\n"
    )
    # WHEN it is mapped THEN the Task and its function are read
    saga = build_saga_map(load_definition(path))
    assert saga.step("Book").function == "${BookFunctionArn}"


@pytest.mark.parametrize(
    ("text", "words"),
    [("{not json", "is not valid JSON"), ('{"Comment": "no states"}', "is not a state machine definition")],
)
def test_a_file_that_is_no_definition_is_refused(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.asl.json"
    path.write_text(text)
    with pytest.raises(DefinitionError, match=words):
        load_definition(path)


# ------------------------------------------------------------------ the command


@pytest.fixture
def sandbox_app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """The CLI's app with `sandbox saga` on it (added here until cli/app.py registers it)."""
    import cli.app

    if not any(group.name == "saga" for group in cli.app.app.registered_groups):
        app = typer.Typer(pretty_exceptions_enable=False)
        app.callback()(cli.app.main_options)
        register(app)
        monkeypatch.setattr(cli.app, "app", app)
    return cli.app.app


def test_saga_map_reads_a_definition_file_with_no_engine(sandbox_app: typer.Typer) -> None:
    # GIVEN no engine WHEN the demo's definition file is mapped as JSON
    result = CliRunner().invoke(sandbox_app, ["saga", "map", "--definition", str(DEMO_ASL), "--json"])
    # THEN it is the map plus which state machine it is
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["stateMachine"]["definitionFile"] == str(DEMO_ASL)
    assert document["stateMachine"]["name"] == "order_saga"
    assert document["effectSteps"][0] == "ReserveInventory"
    # AND for people it names the pairings, each step and the findings
    result = CliRunner().invoke(sandbox_app, ["saga", "map", "--definition", str(DEMO_ASL)])
    assert result.exit_code == 0, result.output
    assert "ReleaseInventory undoes ReserveInventory (same function, action release)" in result.stdout
    assert "MarkOrderCompleted catches only InvalidTransitionError" in result.stdout


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("missing.asl.json", None, "definition file not found"),
        ("broken.asl.yaml", "StartAt: [unclosed", "broken.asl.yaml is not valid YAML"),
    ],
)
def test_a_missing_or_invalid_definition_is_one_readable_line_and_exit_1(
    sandbox_app: typer.Typer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    text: str | None,
    words: str,
) -> None:
    from cli.app import main

    # GIVEN a definition file that is not there, or not readable YAML
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    # WHEN it is mapped through the CLI's entry point
    monkeypatch.setattr(sys, "argv", ["sandbox", "saga", "map", "--definition", str(path)])
    with pytest.raises(SystemExit) as caught:
        main()
    # THEN it is one error line (and a hint), exit code 1, no traceback
    stderr = capsys.readouterr().err
    assert caught.value.code == 1
    assert words in stderr
    assert stderr.splitlines()[0].startswith("error:")
    assert "Traceback" not in stderr


def test_saga_map_reads_the_deployed_state_machine_of_the_stack(
    sandbox_app: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cli.saga_commands
    from sandbox.executions import StateMachineRef

    # GIVEN a stack whose state machine's definition came back with its functions' ARNs filled in
    deployed = DEMO_ASL.read_text()
    for service in ("Inventory", "Payment", "Shipping", "OrderStatus"):
        arn = f"arn:aws:lambda:us-east-1:000000000000:function:demo-{service}Function-X1"
        deployed = deployed.replace(f"${{{service}FunctionArn}}", arn)
    machine = StateMachineRef(
        "OrderSagaStateMachine", "OrderSaga-X1", "arn:aws:states:us-east-1:0:stateMachine:X1"
    )
    asked: list[str | None] = []

    class Stack:
        def client(self, service: str, region: str) -> str:
            return service

    def resolve(stack: Any, region: str, stack_name: str, wanted: str | None) -> StateMachineRef:
        asked.append(wanted)
        return machine

    monkeypatch.setattr(cli.saga_commands, "find_stack", lambda settings: Stack())
    monkeypatch.setattr(cli.saga_commands, "resolve_state_machine", resolve)
    monkeypatch.setattr(cli.saga_commands, "read_definition", lambda sfn, arn: json.loads(deployed))
    # WHEN the stack's state machine is mapped by its logical id
    result = CliRunner().invoke(sandbox_app, ["saga", "map", "OrderSagaStateMachine", "--json"])
    # THEN it is that machine's map, and the functions are known by their names
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert asked == ["OrderSagaStateMachine"]
    assert document["stateMachine"]["logicalId"] == "OrderSagaStateMachine"
    reserve = next(step for step in document["steps"] if step["state"] == "ReserveInventory")
    assert reserve["function"] == "demo-InventoryFunction-X1"
    assert ["ReleaseInventory", "ReserveInventory", "same function, action release"] in [
        list(pairing.values()) for pairing in document["compensations"]
    ]
