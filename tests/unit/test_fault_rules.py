"""Fault rules as a user writes them: attempts, flags, plan files, targets in a stack, durations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.fault_commands import parse_duration
from sandbox.engine_patches.faults import FaultRule
from sandbox.errors import UsageError
from sandbox.faults import (
    Attempts,
    FaultSpec,
    StackTargets,
    UnknownFaultTargetError,
    describe_rule,
    read_plan,
    scoped,
)

TARGETS = StackTargets(
    states=frozenset({"ChargePayment", "ReserveInventory"}),
    functions={"PaymentFunction": "saga-payment-abc123", "ShippingFunction": "saga-shipping-def456"},
    mappings={"OutboxStreamMapping": "0f1e2d3c-uuid"},
)

# ----------------------------------------------------------------------------- attempts


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("all", 1, None),
        ("*", 1, None),
        ("", 1, None),
        ("1", 1, 1),
        (" 2 ", 2, 2),
        ("1-2", 1, 2),
        ("3-3", 3, 3),
        ("2-", 2, None),
    ],
)
def test_attempts_are_parsed_from_every_form(text: str, first: int, last: int | None) -> None:
    assert Attempts.parse(text) == Attempts(first, last)


@pytest.mark.parametrize("text", ["0", "0-2", "3-2", "x", "1-2-3", "-2", "1,2", "one"])
def test_attempts_refuse_what_is_not_a_range_from_1(text: str) -> None:
    with pytest.raises(UsageError, match="attempts"):
        Attempts.parse(text)


@pytest.mark.parametrize(
    ("text", "written"),
    [("all", "all"), ("1", "1"), ("1-2", "1-2"), ("2-", "2-"), ("1-", "all"), ("4-4", "4")],
)
def test_attempts_are_written_back_in_the_form_they_parse_from(text: str, written: str) -> None:
    # GIVEN attempts parsed from a form
    attempts = Attempts.parse(text)
    # THEN their text is the shortest form, and parses back to the same attempts
    assert str(attempts) == written
    assert Attempts.parse(str(attempts)) == attempts


# ----------------------------------------------------------------------------- a spec


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"kind": "explode"}, "not one of"),
        ({"kind": "delay"}, "delay in milliseconds"),
        ({"kind": "delayed-delivery"}, "delay in milliseconds"),
        ({"kind": "delay", "delay_ms": 0}, "delay in milliseconds"),
        ({"kind": "http-response"}, "HTTP status code"),
        ({"kind": "http-response", "status": 600}, "HTTP status code"),
        ({"kind": "http-response", "status": 99}, "HTTP status code"),
        ({"kind": "error", "run_handler": True}, "only http-response"),
        ({"kind": "error", "percent": 0}, "percentage"),
        ({"kind": "error", "percent": 100.5}, "percentage"),
        ({"kind": "error", "duration_seconds": 0}, "duration"),
        ({"kind": "error", "duration_seconds": -1}, "duration"),
    ],
)
def test_a_spec_refuses_what_the_engine_cannot_apply(fields: dict[str, Any], says: str) -> None:
    # GIVEN a rule with one thing wrong
    # WHEN it is built
    with pytest.raises(UsageError) as refused:
        FaultSpec(target="ChargePayment", **fields)
    # THEN the message names the rule and what is wrong
    assert "fault ChargePayment:" in str(refused.value)
    assert says in str(refused.value)


@pytest.mark.parametrize("fields", [{"kind": "delay", "delay_ms": -5}, {"kind": "error", "seed": -1}])
def test_a_spec_refuses_negative_numbers_the_engine_refuses(fields: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        FaultSpec(target="ChargePayment", **fields)


def test_a_valid_spec_keeps_its_defaults() -> None:
    spec = FaultSpec(target="ChargePayment", kind="error")
    assert (spec.attempts, spec.percent, spec.execution, spec.delay_ms, spec.run_handler) == (
        Attempts(),
        100.0,
        None,
        None,
        False,
    )


# ----------------------------------------------------------------------------- --fault


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("ChargePayment:error", FaultSpec("ChargePayment", "error")),
        ("ChargePayment:error:1-2", FaultSpec("ChargePayment", "error", Attempts(1, 2))),
        ("ChargePayment:error-after:2", FaultSpec("ChargePayment", "error-after", Attempts(2, 2))),
        ("ChargePayment:delay=500", FaultSpec("ChargePayment", "delay", delay_ms=500)),
        (
            "Outbox:delayed-delivery=20:1",
            FaultSpec("Outbox", "delayed-delivery", Attempts(1, 1), delay_ms=20),
        ),
        ("Api:http-response=503", FaultSpec("Api", "http-response", status=503)),
        ("ChargePayment:timeout:all", FaultSpec("ChargePayment", "timeout")),
    ],
)
def test_a_fault_flag_is_parsed(flag: str, expected: FaultSpec) -> None:
    assert FaultSpec.parse_flag(flag) == expected


def test_a_fault_flag_takes_its_scope() -> None:
    spec = FaultSpec.parse_flag("ChargePayment:error:1", execution="order-1")
    assert spec == FaultSpec("ChargePayment", "error", Attempts(1, 1), execution="order-1")


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("ChargePayment", "TARGET:KIND"),
        ("ChargePayment:", "TARGET:KIND"),
        (":error", "TARGET:KIND"),
        ("ChargePayment:error:1:2", "TARGET:KIND"),
        ("ChargePayment:delay=fast", "not a whole number"),
        ("ChargePayment:delay=-5", "not a whole number"),
        ("ChargePayment:delay", "delay in milliseconds"),
        ("Api:http-response", "HTTP status code"),
        ("ChargePayment:explode", "not one of"),
        ("ChargePayment:error:0", "attempts"),
    ],
)
def test_a_malformed_fault_flag_is_refused_with_what_is_expected(flag: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        FaultSpec.parse_flag(flag)


def test_scoped_rules_each_name_the_execution() -> None:
    specs = [FaultSpec.parse_flag("ChargePayment:error"), FaultSpec.parse_flag("ShipOrder:timeout:1")]
    assert [spec.execution for spec in scoped(specs, "order-7")] == ["order-7", "order-7"]
    assert [spec.execution for spec in specs] == [None, None]


# ----------------------------------------------------------------------------- plan files


def test_a_spec_round_trips_through_its_plan_form() -> None:
    # GIVEN a rule with every field set
    spec = FaultSpec(
        target="PaymentFunction",
        kind="http-response",
        attempts=Attempts(2, None),
        execution="order-1",
        record="42",
        percent=25.0,
        seed=7,
        duration_seconds=30.0,
        error="Lambda.ServiceException",
        cause="down",
        status=503,
        run_handler=True,
    )
    # WHEN written to the plan form and read back
    doc = spec.to_json()
    # THEN it is camelCase and reads back to the same rule
    assert doc["attempts"] == "2-" and doc["durationSeconds"] == 30.0 and doc["runHandler"] is True
    assert FaultSpec.from_json(json.loads(json.dumps(doc)), "plan") == spec


def test_the_plan_form_leaves_defaults_out() -> None:
    assert FaultSpec("ChargePayment", "error").to_json() == {
        "target": "ChargePayment",
        "kind": "error",
        "attempts": "all",
    }


def test_a_yaml_plan_is_read(tmp_path: Path) -> None:
    # GIVEN a YAML plan with its rules under faults:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "faults:\n"
        "  - target: ChargePayment\n"
        "    kind: error\n"
        "    attempts: 1-2\n"
        "    error: Lambda.ServiceException\n"
        "  - {target: OutboxStreamMapping, kind: delayed-delivery, delayMs: 250, percent: 50, seed: 3}\n"
    )
    # WHEN it is read
    specs = read_plan(plan)
    # THEN each rule is a spec (whole numbers where floats are wanted are accepted)
    assert specs == [
        FaultSpec("ChargePayment", "error", Attempts(1, 2), error="Lambda.ServiceException"),
        FaultSpec("OutboxStreamMapping", "delayed-delivery", delay_ms=250, percent=50.0, seed=3),
    ]


def test_a_json_plan_that_is_a_bare_list_is_read(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"target": "Api", "kind": "http-response", "status": 503, "attempts": 2}]))
    assert read_plan(plan) == [FaultSpec("Api", "http-response", Attempts(2, 2), status=503)]


@pytest.mark.parametrize("text", ["", "faults: []\n", "[]", "faults: 3\n", "{}", "just a string\n"])
def test_a_plan_without_rules_is_refused_with_how_to_write_one(tmp_path: Path, text: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    with pytest.raises(UsageError, match="holds no rules") as refused:
        read_plan(plan)
    assert refused.value.hint is not None and "faults:" in refused.value.hint


def test_a_plan_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("faults: [ {target: a\n")
    with pytest.raises(UsageError, match="neither YAML nor JSON"):
        read_plan(plan)


def test_a_missing_plan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the fault plan"):
        read_plan(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"target": "S", "kind": "error", "attemps": "1"}, "unknown field(s) attemps; known: "),
        ({"target": "S", "kind": "error", "delay": 5, "retries": 1}, "unknown field(s) delay, retries"),
        ({"kind": "error"}, "target and kind are required"),
        ({"target": "S"}, "target and kind are required"),
        ({"target": 3, "kind": "error"}, "target and kind are required"),
        ({"target": "S", "kind": "error", "percent": "50"}, "percent must be a float"),
        ({"target": "S", "kind": "error", "percent": True}, "percent must be a float"),
        ({"target": "S", "kind": "error", "seed": 1.5}, "seed must be a int"),
        ({"target": "S", "kind": "error", "seed": True}, "seed must be a int"),
        ({"target": "S", "kind": "delay", "delayMs": "500"}, "delayMs must be a int"),
        ({"target": "S", "kind": "error", "execution": 7}, "execution must be a str"),
        (
            {"target": "S", "kind": "http-response", "status": 503, "runHandler": "yes"},
            "runHandler must be a bool",
        ),
        ("S:error", "a rule is a mapping"),
    ],
)
def test_a_plans_bad_rule_is_refused_naming_the_file_rule_and_field(
    tmp_path: Path, rule: Any, says: str
) -> None:
    # GIVEN a plan whose second rule is wrong
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"faults": [{"target": "S", "kind": "error"}, rule]}))
    # WHEN it is read
    with pytest.raises(UsageError) as refused:
        read_plan(plan)
    # THEN the message names the file, the rule and what is wrong
    assert "plan.json, rule 2" in str(refused.value)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    "rule",
    [
        {"target": "S", "kind": "error", "attempts": "first"},
        {"target": "S", "kind": "explode"},
        {"target": "S", "kind": "delay"},
    ],
)
def test_a_plans_rule_refused_by_the_spec_names_the_file_and_rule(tmp_path: Path, rule: Any) -> None:
    # GIVEN a plan of two rules on the same state, the second wrong in a way the spec checks
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"faults": [{"target": "S", "kind": "error"}, rule]}))
    # WHEN it is read
    with pytest.raises(UsageError) as refused:
        read_plan(plan)
    # THEN the message says which rule of which file
    assert "plan.json, rule 2" in str(refused.value)


def test_a_plans_null_fields_are_left_out(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("- {target: S, kind: error, execution: null, seed: null}\n")
    assert read_plan(plan) == [FaultSpec("S", "error")]


# ----------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("target", "engine_target"),
    [
        ("ChargePayment", {"state": "ChargePayment"}),
        ("PaymentFunction", {"function": "saga-payment-abc123"}),
        ("saga-shipping-def456", {"function": "saga-shipping-def456"}),
        ("OutboxStreamMapping", {"mapping": "0f1e2d3c-uuid"}),
        ("0f1e2d3c-uuid", {"mapping": "0f1e2d3c-uuid"}),
    ],
)
def test_a_target_resolves_to_what_the_engine_matches(target: str, engine_target: dict[str, str]) -> None:
    assert TARGETS.resolve(target) == engine_target


def test_a_state_named_as_a_function_resolves_to_the_state() -> None:
    targets = StackTargets(frozenset({"Pay"}), {"Pay": "pay-fn"}, {})
    assert targets.resolve("Pay") == {"state": "Pay"}


def test_an_unknown_target_is_refused_listing_what_the_stack_has() -> None:
    # WHEN a target the stack does not have is resolved
    with pytest.raises(UnknownFaultTargetError, match="'ChargePaymnt'") as refused:
        TARGETS.resolve("ChargePaymnt")
    # THEN it is a usage error whose hint lists the states, functions and mappings by name
    assert isinstance(refused.value, UsageError)
    assert refused.value.hint == (
        "Lambda task states: ChargePayment, ReserveInventory; functions: PaymentFunction, ShippingFunction; "
        "stream mappings: OutboxStreamMapping"
    )


def test_an_unknown_target_in_an_empty_stack_says_there_is_nothing_to_break() -> None:
    with pytest.raises(UnknownFaultTargetError) as refused:
        StackTargets(frozenset(), {}, {}).resolve("Anything")
    assert refused.value.hint == "the stack has no Task state, function or stream mapping"


def test_the_hint_lists_only_the_kinds_the_stack_has() -> None:
    with pytest.raises(UnknownFaultTargetError) as refused:
        StackTargets(frozenset(), {"Fn": "fn"}, {}).resolve("Nope")
    assert refused.value.hint == "functions: Fn"


# ----------------------------------------------------------------------------- engine rules


def test_the_engine_rule_of_a_minimal_spec() -> None:
    rule = TARGETS.engine_rule(FaultSpec("PaymentFunction", "error"))
    assert rule == {
        "target": {"function": "saga-payment-abc123"},
        "label": "PaymentFunction",
        "kind": "error",
        "attempts": [1, None],
        "percent": 100.0,
    }


def test_the_engine_rule_carries_every_field_set() -> None:
    spec = FaultSpec(
        target="ChargePayment",
        kind="error",
        attempts=Attempts(1, 2),
        execution="order-1",
        percent=50.0,
        seed=7,
        duration_seconds=60.0,
        error="Lambda.ServiceException",
        cause="down",
    )
    assert TARGETS.engine_rule(spec) == {
        "target": {"state": "ChargePayment"},
        "label": "ChargePayment",
        "kind": "error",
        "attempts": [1, 2],
        "percent": 50.0,
        "execution": "order-1",
        "seed": 7,
        "durationSeconds": 60.0,
        "error": "Lambda.ServiceException",
        "cause": "down",
    }


@pytest.mark.parametrize(
    "spec",
    [
        FaultSpec("ChargePayment", "error", Attempts(2, 3), execution="order-1", seed=1, percent=10),
        FaultSpec("ChargePayment", "timeout"),
        FaultSpec("PaymentFunction", "delay", delay_ms=5, duration_seconds=1.5),
        FaultSpec("saga-payment-abc123", "http-response", status=503, run_handler=True),
        FaultSpec("OutboxStreamMapping", "poison", record="42"),
        FaultSpec("OutboxStreamMapping", "delayed-delivery", delay_ms=100),
        FaultSpec("PaymentFunction", "duplicate-delivery"),
        FaultSpec("PaymentFunction", "crash", error="Runtime.ExitError"),
    ],
)
def test_every_engine_rule_is_one_the_engine_accepts(spec: FaultSpec) -> None:
    # GIVEN a spec the user side accepts
    raw = TARGETS.engine_rule(spec)
    # WHEN the engine parses the rule it is sent
    parsed = FaultRule.parse(json.loads(json.dumps(raw)), "f1", 0.0)
    # THEN the engine applies what the user asked for
    assert (parsed.kind, parsed.label) == (spec.kind, spec.target)
    assert (parsed.first_attempt, parsed.last_attempt) == (spec.attempts.first, spec.attempts.last)
    assert parsed.execution == spec.execution and parsed.record == spec.record
    assert parsed.percent == spec.percent and parsed.seed == spec.seed
    assert parsed.delay_ms == (spec.delay_ms or 0) and parsed.status == spec.status
    assert parsed.run_handler == spec.run_handler


@pytest.mark.parametrize("kind", ["poison", "duplicate-delivery"])
def test_a_stream_kind_on_a_state_is_refused_listing_the_mappings(kind: str) -> None:
    with pytest.raises(UsageError, match=f"{kind} applies to a stream mapping") as refused:
        TARGETS.engine_rule(FaultSpec("ChargePayment", kind))
    assert refused.value.hint == "stream mappings: OutboxStreamMapping"


def test_a_stream_kind_on_a_state_of_a_stack_without_mappings_says_so() -> None:
    targets = StackTargets(frozenset({"S"}), {}, {})
    with pytest.raises(UsageError) as refused:
        targets.engine_rule(FaultSpec("S", "poison"))
    assert refused.value.hint == "stream mappings: none in this stack"


def test_an_engine_rule_for_an_unknown_target_is_refused() -> None:
    with pytest.raises(UnknownFaultTargetError):
        TARGETS.engine_rule(FaultSpec("Nope", "error"))


# ----------------------------------------------------------------------------- describing


def listed_rule(**fields: Any) -> dict[str, Any]:
    """A rule as the engine lists it (defaults as FaultRule.to_json writes them)."""
    return {
        "id": "f1",
        "target": {"state": "ChargePayment"},
        "label": "ChargePayment",
        "kind": "error",
        "attempts": [1, None],
        "execution": None,
        "record": None,
        "percent": 100.0,
        "seed": None,
        "expiresInSeconds": None,
        "error": None,
        "cause": None,
        "delayMs": 0,
        "status": None,
        "runHandler": False,
        "matched": 0,
        "injected": 0,
    } | fields


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({}, "f1: error on ChargePayment"),
        ({"attempts": [1, 2]}, "f1: error on ChargePayment attempts 1-2"),
        ({"attempts": [2, None]}, "f1: error on ChargePayment attempts 2-"),
        ({"kind": "delay", "delayMs": 500}, "f1: delay 500 ms on ChargePayment"),
        ({"kind": "http-response", "status": 503, "label": "Api"}, "f1: http-response status 503 on Api"),
        ({"execution": "order-1"}, "f1: error on ChargePayment execution order-1"),
        ({"record": "42", "kind": "poison"}, "f1: poison on ChargePayment records with 42"),
        ({"percent": 12.5, "seed": 7}, "f1: error on ChargePayment 12.5% (seed 7)"),
        ({"error": "Lambda.ServiceException"}, "f1: error on ChargePayment as Lambda.ServiceException"),
        ({"expiresInSeconds": 59.6}, "f1: error on ChargePayment for 60 s more"),
        (
            {"attempts": [1, 1], "execution": "o-1", "percent": 50.0, "seed": 1, "error": "E"},
            "f1: error on ChargePayment attempts 1 execution o-1 50% (seed 1) as E",
        ),
    ],
)
def test_a_listed_rule_is_described_in_one_line(fields: dict[str, Any], line: str) -> None:
    assert describe_rule(listed_rule(**fields)) == line


def test_the_engines_own_listing_is_described() -> None:
    # GIVEN a rule as the engine really lists it
    engine_rule = TARGETS.engine_rule(FaultSpec("ChargePayment", "delay", Attempts(1, 2), delay_ms=250))
    listed = FaultRule.parse(engine_rule, "f3", 0.0).to_json(0.0)
    # THEN it is described from the engine's fields
    assert describe_rule(listed) == "f3: delay 250 ms on ChargePayment attempts 1-2"


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("1h", 3600.0),
        (" 2m ", 120.0),
    ],
)
def test_a_duration_is_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "0s", "-5", "5d", "abc", "1m30s", "m"])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="--duration"):
        parse_duration(text)


def test_the_sandbox_and_its_engine_patch_know_the_same_kinds():
    # The patch is a package of its own (the container image runs it without the sandbox), so it
    # keeps its own copy of the vocabulary: they must agree, or a rule is refused on one side only.
    from sandbox import faults
    from sandbox.engine_patches import faults as engine

    assert faults.KINDS == engine.KINDS
    assert faults.STREAM_KINDS == engine.STREAM_KINDS
    assert faults.ROUTE == engine.ROUTE
