"""AWS FIS experiment templates: importing their Lambda actions as rules, exporting rules as one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

from sandbox.errors import UsageError
from sandbox.faults import Attempts, FaultSpec, StackTargets
from sandbox.fis import (
    PLACEHOLDER_ROLE_ARN,
    export_fis,
    format_duration,
    import_fis,
    parse_duration,
    read_fis,
    task_functions,
)

ROLE = "arn:aws:iam::123456789012:role/fis-experiments"


def create_template_shape() -> Any:
    """botocore's own model of the FIS CreateExperimentTemplate request."""
    model = botocore.session.get_session().get_service_model("fis")
    return model.operation_model("CreateExperimentTemplate").input_shape


def check_limits(value: Any, shape: Any, path: str = "") -> None:
    """What botocore's validator leaves to the service: maximum sizes and the ``[\\S]+`` patterns."""
    limit = shape.metadata.get("max")
    if limit is not None and shape.type_name in ("string", "list", "map"):
        assert len(value) <= limit, f"{path} is longer than {limit}"
    if shape.type_name == "string" and shape.metadata.get("pattern") == "[\\S]+":
        assert re.fullmatch(r"\S+", value), f"{path} {value!r} does not match [\\S]+"
    if shape.type_name == "structure":
        for name, member in value.items():
            check_limits(member, shape.members[name], f"{path}.{name}")
    elif shape.type_name == "list":
        for index, item in enumerate(value):
            check_limits(item, shape.member, f"{path}[{index}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            check_limits(key, shape.key, f"{path} key")
            check_limits(item, shape.value, f"{path}.{key}")


def assert_valid_request(template: dict[str, Any]) -> None:
    """The template is a CreateExperimentTemplate body as botocore's model of the API describes it."""
    shape = create_template_shape()
    # The SDK fills clientToken itself (an idempotency token); the model still lists it as required.
    params = {"clientToken": "test-token", **template}
    validate_parameters(params, shape)
    check_limits(params, shape)
    json.dumps(template)  # written to a file as it is


def expressible_rules() -> list[FaultSpec]:
    return [
        FaultSpec(target="ChargePaymentFunction", kind="error", duration_seconds=300, percent=50),
        FaultSpec(target="ReserveStockFunction", kind="error-after", duration_seconds=60),
        FaultSpec(target="ChargePaymentFunction", kind="delay", delay_ms=2500, duration_seconds=3600),
        FaultSpec(target="OrderApiFunction", kind="http-response", status=503, duration_seconds=90),
        FaultSpec(
            target="OrderApiFunction", kind="http-response", status=502, run_handler=True, duration_seconds=30
        ),
    ]


# ------------------------------------------------------------------ export


def test_the_export_of_expressible_rules_is_a_valid_create_experiment_template_request() -> None:
    # GIVEN rules of every kind FIS can express
    # WHEN they are exported
    export = export_fis(expressible_rules(), stack_name="saga-sandbox", role_arn=ROLE, description=None)
    # THEN botocore's model of CreateExperimentTemplate accepts the body, and nothing was left out
    assert_valid_request(export.template)
    assert export.unsupported == []
    assert export.template["roleArn"] == ROLE
    assert export.template["stopConditions"] == [{"source": "none"}]


def test_the_export_targets_functions_by_their_cloudformation_tags_and_strings_for_parameters() -> None:
    # GIVEN an error rule on half the invocations for five minutes
    rule = FaultSpec(target="ChargePaymentFunction", kind="error", duration_seconds=300, percent=50)
    # WHEN it is exported
    template = export_fis([rule], stack_name="saga-sandbox", role_arn=ROLE, description="mine").template
    # THEN its one target selects the function by stack name and logical id, and its action speaks FIS
    assert template["description"] == "mine"
    assert template["targets"] == {
        "ChargePaymentFunction": {
            "resourceType": "aws:lambda:function",
            "resourceTags": {
                "aws:cloudformation:stack-name": "saga-sandbox",
                "aws:cloudformation:logical-id": "ChargePaymentFunction",
            },
            "selectionMode": "ALL",
        }
    }
    [action] = template["actions"].values()
    assert action["actionId"] == "aws:lambda:invocation-error"
    assert action["targets"] == {"Functions": "ChargePaymentFunction"}
    assert action["parameters"] == {
        "duration": "PT5M",
        "invocationPercentage": "50",
        "preventExecution": "true",
    }


def test_two_rules_on_one_function_share_its_target_and_get_their_own_actions() -> None:
    rules = [
        FaultSpec(target="ChargePaymentFunction", kind="error", duration_seconds=60),
        FaultSpec(target="ChargePaymentFunction", kind="error", duration_seconds=120),
    ]
    template = export_fis(rules, stack_name="s", role_arn=ROLE, description=None).template
    assert list(template["targets"]) == ["ChargePaymentFunction"]
    assert sorted(template["actions"]) == ["ChargePaymentFunction-error", "ChargePaymentFunction-error-2"]
    assert_valid_request(template)


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (FaultSpec(target="ChargePaymentFunction", kind="throttle"), "no Lambda throttle action"),
        (FaultSpec(target="ChargePaymentFunction", kind="timeout"), "no timeout action"),
        (FaultSpec(target="ChargePaymentFunction", kind="crash"), "kills the runtime"),
        (FaultSpec(target="Publisher", kind="duplicate-delivery"), "not a stream mapping's deliveries"),
        (FaultSpec(target="Publisher", kind="delayed-delivery", delay_ms=100), "not a stream mapping's"),
        (FaultSpec(target="Publisher", kind="poison"), "not a stream mapping's deliveries"),
        (
            FaultSpec(target="ChargePaymentFunction", kind="error", attempts=Attempts.parse("1-2")),
            "not chosen attempts",
        ),
        (FaultSpec(target="ChargePaymentFunction", kind="error", execution="order-1"), "to one execution"),
        (FaultSpec(target="Publisher", kind="error", record="order-1"), "to one stream record"),
        (FaultSpec(target="ChargePaymentFunction", kind="delay", delay_ms=900_001), "at most 900000 ms"),
    ],
)
def test_a_rule_fis_cannot_express_is_listed_with_its_reason_and_left_out(
    rule: FaultSpec, reason: str
) -> None:
    # GIVEN one rule FIS can express and one it cannot
    kept = FaultSpec(target="ReserveStockFunction", kind="error", duration_seconds=60)
    # WHEN both are exported
    export = export_fis([kept, rule], stack_name="s", role_arn=ROLE, description=None)
    # THEN the second is one line of unsupported, with its reason, and only the first is an action
    [line] = export.unsupported
    assert line.startswith(f"{rule.target}:{rule.kind}")
    assert reason in line
    assert [action["targets"]["Functions"] for action in export.template["actions"].values()] == [
        "ReserveStockFunction"
    ]
    assert_valid_request(export.template)


def test_a_seeded_percentage_is_exported_without_its_seed_and_says_so() -> None:
    rule = FaultSpec(target="F", kind="error", percent=12.5, seed=7, duration_seconds=60)
    export = export_fis([rule], stack_name="s", role_arn=ROLE, description=None)
    [action] = export.template["actions"].values()
    assert action["parameters"]["invocationPercentage"] == "12"
    assert any("seed 7 is dropped" in note for note in export.notes)
    assert any("12.5% becomes 12%" in note for note in export.notes)
    assert export.unsupported == []


def test_a_rule_without_duration_gets_ten_minutes_and_a_note() -> None:
    export = export_fis(
        [FaultSpec(target="F", kind="error")], stack_name="s", role_arn=ROLE, description=None
    )
    [action] = export.template["actions"].values()
    assert action["parameters"]["duration"] == "PT10M"
    assert any("FIS needs a duration" in note for note in export.notes)


def test_without_a_role_the_template_holds_a_placeholder_to_replace() -> None:
    export = export_fis(
        [FaultSpec(target="F", kind="error")], stack_name="s", role_arn=None, description=None
    )
    assert export.template["roleArn"] == PLACEHOLDER_ROLE_ARN
    assert any("placeholder" in note for note in export.notes)
    assert_valid_request(export.template)


def test_an_error_name_is_dropped_with_a_note() -> None:
    rule = FaultSpec(target="F", kind="error", error="Lambda.ServiceException", duration_seconds=60)
    export = export_fis([rule], stack_name="s", role_arn=ROLE, description=None)
    assert any("'Lambda.ServiceException' is dropped" in note for note in export.notes)


def test_a_state_rule_goes_on_the_states_function_with_a_note_that_fis_breaks_every_invocation() -> None:
    # GIVEN a rule on a Task state whose function is known
    rule = FaultSpec(target="ChargePayment", kind="error", duration_seconds=60)
    # WHEN it is exported with the map of states to functions
    export = export_fis(
        [rule],
        stack_name="s",
        role_arn=ROLE,
        description=None,
        state_functions={"ChargePayment": "ChargePaymentFunction"},
    )
    # THEN FIS breaks the function, and the note says every invocation of it breaks
    [action] = export.template["actions"].values()
    assert action["targets"] == {"Functions": "ChargePaymentFunction"}
    target = export.template["targets"]["ChargePaymentFunction"]
    assert target["resourceTags"]["aws:cloudformation:logical-id"] == "ChargePaymentFunction"
    assert any("every invocation of ChargePaymentFunction" in note for note in export.notes)


def stack_targets() -> StackTargets:
    return StackTargets(
        states=frozenset({"ChargePayment", "ReserveStock"}),
        functions={
            "ChargePaymentFunction": "saga-ChargePaymentFunction-abc",
            "PublisherFunction": "saga-pub",
        },
        mappings={"PublisherStream": "0f4e-uuid"},
    )


def test_a_state_rule_without_its_function_is_unsupported() -> None:
    rules = [
        FaultSpec(target="ReserveStock", kind="error", duration_seconds=60),
        FaultSpec(target="ChargePaymentFunction", kind="error", duration_seconds=60),
    ]
    export = export_fis(rules, stack_name="s", role_arn=ROLE, description=None, stack_targets=stack_targets())
    [line] = export.unsupported
    assert line.startswith("ReserveStock:error: FIS cannot target a Step Functions state")


def test_with_the_stack_a_function_name_is_exported_by_its_logical_id_and_a_mapping_is_unsupported() -> None:
    rules = [
        FaultSpec(target="saga-ChargePaymentFunction-abc", kind="error", duration_seconds=60),
        FaultSpec(target="PublisherStream", kind="error", duration_seconds=60),
        FaultSpec(target="Nowhere", kind="error", duration_seconds=60),
    ]
    export = export_fis(rules, stack_name="s", role_arn=ROLE, description=None, stack_targets=stack_targets())
    assert list(export.template["targets"]) == ["ChargePaymentFunction"]
    assert [line.split(":")[0] for line in export.unsupported] == ["PublisherStream", "Nowhere"]
    assert "not event source mappings" in export.unsupported[0]


def test_nothing_expressible_is_a_usage_error_with_each_reason() -> None:
    rules = [FaultSpec(target="F", kind="throttle"), FaultSpec(target="F", kind="crash")]
    with pytest.raises(UsageError, match="none of the 2 fault rule") as caught:
        export_fis(rules, stack_name="s", role_arn=ROLE, description=None)
    assert caught.value.details is not None
    assert "throttle" in caught.value.details
    assert "crash" in caught.value.details


def test_no_rules_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no fault rules to export"):
        export_fis([], stack_name="s", role_arn=ROLE, description=None)


def test_the_shape_check_catches_a_broken_template() -> None:
    # GIVEN an exported template with its required roleArn removed and a parameter that is not a string
    template = export_fis(expressible_rules(), stack_name="s", role_arn=ROLE, description=None).template
    del template["roleArn"]
    # THEN botocore's model refuses it: the test's check can fail
    with pytest.raises(ParamValidationError, match="roleArn"):
        assert_valid_request(template)
    template["roleArn"] = ROLE
    next(iter(template["actions"].values()))["parameters"]["duration"] = 300
    with pytest.raises(ParamValidationError, match="duration"):
        assert_valid_request(template)


# ------------------------------------------------------------------ round trip


def test_export_then_import_gives_back_the_expressible_rules() -> None:
    # GIVEN expressible rules, with a throttle FIS cannot express
    rules = expressible_rules()
    export = export_fis(
        [*rules, FaultSpec(target="F", kind="throttle")], stack_name="s", role_arn=ROLE, description=None
    )
    # WHEN the exported template is imported
    imported = import_fis(export.template, source="exported.json")
    # THEN the same rules come back, and nothing was skipped
    assert imported.specs == rules
    assert imported.skipped == []


# ------------------------------------------------------------------ import


def hand_written_template() -> dict[str, Any]:
    return {
        "description": "Break the payment path",
        "roleArn": ROLE,
        "stopConditions": [{"source": "none"}],
        "targets": {
            "Payment": {
                "resourceType": "aws:lambda:function",
                "resourceArns": ["arn:aws:lambda:eu-west-1:123456789012:function:charge-payment"],
                "selectionMode": "ALL",
            },
            "Api": {
                "resourceType": "aws:lambda:function",
                "resourceTags": {"aws:cloudformation:logical-id": "OrderApiFunction"},
                "selectionMode": "ALL",
            },
            "Web": {
                "resourceType": "aws:ec2:instance",
                "resourceTags": {"role": "web"},
                "selectionMode": "COUNT(1)",
            },
        },
        "actions": {
            "fail-before": {
                "actionId": "aws:lambda:invocation-error",
                "parameters": {"duration": "PT5M", "invocationPercentage": "25", "preventExecution": "true"},
                "targets": {"Functions": "Payment"},
            },
            "fail-after": {
                "actionId": "aws:lambda:invocation-error",
                "parameters": {"duration": "PT30S", "preventExecution": "false"},
                "targets": {"Functions": "Payment"},
            },
            "slow": {
                "actionId": "aws:lambda:invocation-add-delay",
                "parameters": {"duration": "PT1H", "startupDelayMilliseconds": "1500"},
                "targets": {"Functions": "Payment"},
            },
            "api-503": {
                "actionId": "aws:lambda:invocation-http-integration-response",
                "parameters": {
                    "duration": "PT2M",
                    "statusCode": "503",
                    "contentTypeHeader": "application/json",
                    "preventExecution": "false",
                },
                "targets": {"Functions": "Api"},
            },
            "stop-web": {
                "actionId": "aws:ec2:stop-instances",
                "parameters": {"startInstancesAfterDuration": "PT2M"},
                "targets": {"Instances": "Web"},
            },
        },
    }


def test_a_hand_written_template_imports_its_three_lambda_actions_and_skips_the_ec2_one() -> None:
    # GIVEN an FIS template with the three Lambda actions and an EC2 one
    # WHEN it is imported
    imported = import_fis(hand_written_template(), source="experiment.json")
    # THEN each Lambda action is a rule on its function, with FIS's duration and percentage
    assert imported.specs == [
        FaultSpec(target="charge-payment", kind="error", percent=25, duration_seconds=300),
        FaultSpec(target="charge-payment", kind="error-after", duration_seconds=30),
        FaultSpec(target="charge-payment", kind="delay", delay_ms=1500, duration_seconds=3600),
        FaultSpec(
            target="OrderApiFunction",
            kind="http-response",
            status=503,
            run_handler=True,
            duration_seconds=120,
        ),
    ]
    # AND the EC2 action is one skipped line that says why
    [line] = imported.skipped
    assert line.startswith("stop-web (aws:ec2:stop-instances): not a Lambda invocation action")


def test_a_template_as_get_experiment_template_answers_it_imports_too() -> None:
    imported = import_fis({"experimentTemplate": hand_written_template()}, source="got.json")
    assert len(imported.specs) == 4


def test_one_rule_per_function_a_target_names() -> None:
    template = hand_written_template()
    template["targets"]["Payment"]["resourceArns"].append(
        "arn:aws:lambda:eu-west-1:123456789012:function:reserve-stock:live"
    )
    imported = import_fis(template, source="t.json")
    assert [spec.target for spec in imported.specs if spec.kind == "error"] == [
        "charge-payment",
        "reserve-stock",
    ]
    assert any("qualifiers are ignored" in note for note in imported.notes)


def test_add_delay_without_its_delay_takes_fis_default_of_one_second() -> None:
    template = hand_written_template()
    del template["actions"]["slow"]["parameters"]["startupDelayMilliseconds"]
    imported = import_fis(template, source="t.json")
    [delay] = [spec for spec in imported.specs if spec.kind == "delay"]
    assert delay.delay_ms == 1000


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (
            {
                "resourceType": "aws:lambda:function",
                "resourceTags": {"team": "payments"},
                "selectionMode": "ALL",
            },
            "tags other than aws:cloudformation:logical-id cannot be resolved locally",
        ),
        (
            {"resourceType": "aws:lambda:function", "resourceArns": ["arn:aws:sqs:eu-west-1:1:queue"]},
            "is not a Lambda function ARN",
        ),
        ({"resourceType": "aws:lambda:function", "selectionMode": "ALL"}, "names no function"),
        ({"resourceType": "aws:ec2:instance", "resourceArns": ["arn:aws:ec2:x"]}, "not aws:lambda:function"),
    ],
)
def test_an_action_whose_target_names_no_function_is_skipped_with_why(
    target: dict[str, Any], reason: str
) -> None:
    template = hand_written_template()
    template["targets"]["Payment"] = target
    imported = import_fis(template, source="t.json")
    assert {spec.target for spec in imported.specs} == {"OrderApiFunction"}
    payment_lines = [
        line for line in imported.skipped if line.startswith(("fail-before", "fail-after", "slow"))
    ]
    assert len(payment_lines) == 3
    assert all(reason in line for line in payment_lines)


def test_an_action_naming_a_missing_target_is_skipped() -> None:
    template = hand_written_template()
    template["actions"]["slow"]["targets"] = {"Functions": "Missing"}
    imported = import_fis(template, source="t.json")
    assert (
        "slow (aws:lambda:invocation-add-delay): its target 'Missing' is not in the template's targets"
        in (imported.skipped)
    )


def test_a_random_selection_mode_is_imported_with_a_note() -> None:
    template = hand_written_template()
    template["targets"]["Api"]["selectionMode"] = "PERCENT(50)"
    imported = import_fis(template, source="t.json")
    assert any("selects PERCENT(50) at random" in note for note in imported.notes)


def test_a_status_the_sandbox_cannot_answer_and_a_zero_delay_are_skipped() -> None:
    template = hand_written_template()
    template["actions"]["api-503"]["parameters"]["statusCode"] = "000"
    template["actions"]["slow"]["parameters"]["startupDelayMilliseconds"] = "0"
    imported = import_fis(template, source="t.json")
    assert {spec.kind for spec in imported.specs} == {"error", "error-after"}
    assert any("status 0 is not an HTTP status" in line for line in imported.skipped)
    assert any("a delay of 0 ms changes nothing" in line for line in imported.skipped)


@pytest.mark.parametrize("doc", [{}, {"actions": []}, [], "actions", {"targets": {}}])
def test_a_document_that_is_not_an_fis_template_is_a_usage_error(doc: Any) -> None:
    with pytest.raises(UsageError, match=r"plan\.json is not an AWS FIS experiment template"):
        import_fis(doc, source="plan.json")


@pytest.mark.parametrize(
    ("parameter", "value", "message"),
    [
        ("duration", "5 minutes", "duration '5 minutes' is not an ISO 8601 duration"),
        ("duration", "PT0S", "duration 'PT0S' is not longer than zero"),
        ("invocationPercentage", "150", "invocationPercentage '150' is not a percentage"),
        ("invocationPercentage", "half", "invocationPercentage 'half' is not a percentage"),
        ("preventExecution", "yes", "preventExecution 'yes' is neither"),
    ],
)
def test_a_bad_lambda_action_parameter_is_a_usage_error_naming_the_action(
    parameter: str, value: str, message: str
) -> None:
    template = hand_written_template()
    template["actions"]["fail-before"]["parameters"][parameter] = value
    with pytest.raises(UsageError, match=re.escape(f"t.json, action fail-before: {message}")):
        import_fis(template, source="t.json")


def test_read_fis_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(hand_written_template()))
    assert len(read_fis(path).specs) == 4
    path.write_text(json.dumps({"description": "no actions"}))
    with pytest.raises(UsageError, match=r"experiment\.json is not an AWS FIS experiment template"):
        read_fis(path)
    with pytest.raises(UsageError, match="cannot read the FIS template"):
        read_fis(tmp_path / "missing.json")


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT30S", 30), ("PT5M", 300), ("PT1H", 3600), ("PT1H30M", 5400), ("PT0.5S", 0.5), ("P1D", 86400)],
)
def test_iso_8601_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, where="x") == seconds


@pytest.mark.parametrize("text", ["5m", "PT", "P", "P1DT", "PT5X", "", "30", 300, None, "-PT5M", "PT0S"])
def test_a_duration_that_is_not_iso_8601_or_not_positive_is_a_usage_error(text: Any) -> None:
    with pytest.raises(UsageError, match="where: duration"):
        parse_duration(text, where="where")


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "PT30S"), (300, "PT5M"), (5400, "PT1H30M"), (3661, "PT1H1M1S"), (0.2, "PT1S")]
)
def test_durations_are_written_as_fis_takes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, where="x") >= seconds


# ------------------------------------------------------------------ states -> functions


def lambda_task(function: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function},
    }


def test_task_functions_maps_each_state_to_the_one_function_it_invokes() -> None:
    # GIVEN two state machines: one state in both with the same function, one with different functions
    functions = {
        "ChargePaymentFunction": "saga-charge",
        "RefundFunction": "saga-refund",
        "Other": "saga-other",
    }
    first = {
        "StartAt": "ChargePayment",
        "States": {
            "ChargePayment": lambda_task("arn:aws:lambda:us-east-1:000000000000:function:saga-charge"),
            "Refund": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:000000000000:function:saga-refund",
            },
            "Record": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem"},
            "Done": {"Type": "Succeed"},
        },
    }
    second = {
        "StartAt": "ChargePayment",
        "States": {"ChargePayment": lambda_task("saga-charge"), "Refund": lambda_task("saga-other")},
    }
    # WHEN the states are mapped to functions
    mapped = task_functions([first, second], functions)
    # THEN only the state with a single function of the stack is in the map
    assert mapped == {"ChargePayment": "ChargePaymentFunction"}


def test_a_function_named_by_its_name_gets_no_note_about_states() -> None:
    rule = FaultSpec(target="saga-ChargePaymentFunction-abc", kind="error", duration_seconds=60)
    export = export_fis(
        [rule], stack_name="s", role_arn=ROLE, description=None, stack_targets=stack_targets()
    )
    assert not any("cannot target a state" in note for note in export.notes)
