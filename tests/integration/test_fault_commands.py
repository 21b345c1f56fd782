"""`sandbox faults`, `sandbox execute --fault/--mock-config` and `sandbox saga map`, through the CLI,
against the session engine and the demo's saga started directly (any state machine works alike)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.faults import fault_book
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration
SAGA = "OrderSagaStateMachine"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def cli(engine_settings: Settings) -> Cli:
    env = {**os.environ, "SANDBOX_PORT": str(engine_settings.port),
           "SANDBOX_STATE_DIR": str(engine_settings.state_dir), "COLUMNS": "200", "NO_COLOR": "1"}  # fmt: skip
    return lambda *args: run_sandbox(*args, env=env)


@pytest.fixture(autouse=True)
def no_rules_left(stack: LocalStack):
    """Each test starts and ends with no rule of its own left on the shared engine."""
    yield
    book = fault_book(stack)
    book.clear_rules([rule["id"] for rule in book.listed() if rule["label"] in ("ChargePayment", "ReserveInventory",
                      "PaymentFunction", "InventoryFunction")])  # fmt: skip


def test_a_rule_is_added_listed_and_cleared_and_an_unknown_target_named(cli: Cli, saga_input):
    # GIVEN a rule for one execution only
    added = cli("faults", "add", "ChargePayment", "error", "--execution", "nobody-runs-this", "--json")
    assert added.returncode == 0, added.stderr
    (rule,) = json.loads(added.stdout)["rules"]
    # WHEN the rules are listed THEN it is there, with what it targets
    listed = json.loads(cli("faults", "list", "--json").stdout)["rules"]
    assert {
        "id": rule["id"],
        "kind": "error",
        "label": "ChargePayment",
        "execution": "nobody-runs-this",
    }.items() <= next(r for r in listed if r["id"] == rule["id"]).items()
    # AND it clears by id, and then an unknown id is one readable line
    assert cli("faults", "clear", rule["id"]).returncode == 0
    gone = cli("faults", "clear", rule["id"])
    assert gone.returncode == 1 and f"there is no fault rule {rule['id']}" in gone.stderr
    # AND a target the stack lacks is refused with what it has, before anything is set
    wrong = cli("faults", "add", "ChargeTheMoon", "error")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "no Task state, function or stream mapping named 'ChargeTheMoon'" in wrong.stderr
    assert "ChargePayment" in wrong.stderr and "PaymentFunction" in wrong.stderr


def test_execute_with_a_fault_breaks_that_execution_only_and_the_trace_says_so(cli: Cli, saga_input):
    # GIVEN two saga inputs, one run with its payment's answer lost after charging
    broken, healthy = saga_input(), saga_input()
    result = cli(
        "execute", SAGA, "--input", json.dumps(broken), "--fault", "ChargePayment:error-after", "--json"
    )
    # THEN it failed, refunded the charge that landed, and its trace marks the injected attempt
    assert result.returncode == 1, result.stderr
    trace = json.loads(result.stdout)
    assert trace["status"] == "FAILED" and trace["error"] == "OrderFailed"
    assert trace["compensations"][:2] == ["RefundPayment", "ReleaseInventory"]
    (injected,) = trace["injectedFaults"]
    assert (injected["state"], injected["kind"], injected["attempt"]) == ("ChargePayment", "error-after", 1)
    charge = next(s for s in trace["states"] if s["name"] == "ChargePayment")
    assert charge["attempts"][0]["injectedFault"]["rule"] == injected["rule"]
    # AND the rule went with the execution: the next one is not broken
    assert cli("execute", SAGA, "--input", json.dumps(healthy), "--json").returncode == 0
    assert [
        r
        for r in json.loads(cli("faults", "list", "--json").stdout)["rules"]
        if r["label"] == "ChargePayment"
    ] == []


def test_a_retried_error_name_is_caught_by_the_saga_s_retry(cli: Cli, saga_input, tmp_path: Path):
    # GIVEN a plan that fails the reservation's first two attempts as the Lambda service would
    plan = tmp_path / "faults.yaml"
    plan.write_text(
        "faults:\n  - {target: ReserveInventory, kind: error, attempts: '1-2', error: Lambda.ServiceException}\n"
    )
    # WHEN the saga runs with it
    result = cli("execute", SAGA, "--input", json.dumps(saga_input()), "--faults", str(plan), "--json")
    # THEN the Retry ran the step a third time and the saga completed
    assert result.returncode == 0, result.stdout + result.stderr
    trace = json.loads(result.stdout)
    reserve = next(s for s in trace["states"] if s["name"] == "ReserveInventory")
    assert [a["error"] for a in reserve["attempts"]] == [
        "Lambda.ServiceException",
        "Lambda.ServiceException",
        None,
    ]
    assert [f["attempt"] for f in trace["injectedFaults"]] == [1, 2]


def test_a_step_functions_local_mock_configuration_runs_unchanged(cli: Cli, saga_input, tmp_path: Path):
    # GIVEN a mock configuration as Step Functions Local reads it: the reservation answers out of stock
    mock = {
        "StateMachines": {SAGA: {"TestCases": {"NoStock": {"ReserveInventory": "OutOfStock"}}}},
        "MockedResponses": {
            "OutOfStock": {"0": {"Throw": {"Error": "OutOfStockError", "Cause": "mocked: none left"}}}
        },
    }
    path = tmp_path / "MockConfigFile.json"
    path.write_text(json.dumps(mock))
    # WHEN the saga runs that test case
    result = cli("execute", SAGA, "--input", json.dumps(saga_input()), "--mock-config", str(path),
                 "--test-case", "NoStock", "--json")  # fmt: skip
    # THEN the mocked error took the business path: nothing reserved, nothing to undo
    assert result.returncode == 1, result.stderr
    trace = json.loads(result.stdout)
    reserve = next(s for s in trace["states"] if s["name"] == "ReserveInventory")
    assert reserve["error"] == "OutOfStockError" and "ReleaseInventory" not in trace["compensations"]
    # AND a test case the file lacks is one line naming those it has
    wrong = cli("execute", SAGA, "--input", "{}", "--mock-config", str(path), "--test-case", "Nope")
    assert wrong.returncode == 1 and "has no test case 'Nope'" in wrong.stderr and "NoStock" in wrong.stderr


def test_rules_go_to_aws_fis_and_come_back(cli: Cli, tmp_path: Path):
    # GIVEN two rules FIS can express and one it cannot
    for args in (("ChargePayment", "error-after", "--percent", "20"), ("ReserveInventory", "delay", "--delay-ms", "300"),
                 ("ChargePayment", "throttle", "--attempts", "1")):  # fmt: skip
        assert cli("faults", "add", *args).returncode == 0
    # WHEN they are exported for FIS
    exported = cli("faults", "export", "--fis", "--output", str(tmp_path / "experiment.json"), "--json")
    assert exported.returncode == 0, exported.stderr
    report: dict[str, Any] = json.loads(exported.stdout)
    # THEN the template breaks the functions the states invoke, by their CloudFormation tags, and
    # the throttle is named as inexpressible
    actions = {a["actionId"] for a in report["template"]["actions"].values()}
    assert actions == {"aws:lambda:invocation-error", "aws:lambda:invocation-add-delay"}
    tags = [
        t["resourceTags"]["aws:cloudformation:logical-id"] for t in report["template"]["targets"].values()
    ]
    assert sorted(tags) == ["InventoryFunction", "PaymentFunction"]
    assert any("throttle" in line for line in report["unsupported"])
    # WHEN the rules are cleared and the template imported
    assert cli("faults", "clear").returncode == 0
    imported = cli("faults", "import", str(tmp_path / "experiment.json"), "--json")
    assert imported.returncode == 0, imported.stderr
    rules = json.loads(imported.stdout)["rules"]
    # THEN the engine runs the same two, on the functions
    assert sorted((r["label"], r["kind"]) for r in rules) == [
        ("InventoryFunction", "delay"),
        ("PaymentFunction", "error-after"),
    ]


def test_the_saga_map_of_the_deployed_machine(cli: Cli):
    result = cli("saga", "map", "--json")
    assert result.returncode == 0, result.stderr
    saga = json.loads(result.stdout)
    assert saga["happyPath"][:3] == ["ReserveInventory", "ChargePayment", "CreateShipment"]
    charge = next(step for step in saga["steps"] if step["state"] == "ChargePayment")
    assert any(route["next"] == "RefundPayment" for route in charge["catch"])


def test_an_api_integration_answers_the_injected_status_and_writes_nothing(
    cli: Cli, api, tables, customer_id, make_product
):
    # GIVEN the order API's function answering 503 through its integration, then throttled
    from tests.integration.conftest import records_of_customer

    body = {"customerId": customer_id, "items": [{"productId": make_product(), "quantity": 1}]}
    rule = json.loads(
        cli("faults", "add", "OrderApiFunction", "http-response", "--status", "503", "--json").stdout
    )
    try:
        # WHEN an order is posted THEN the client gets the status, and no order was written
        response = api.post_order(body)
        assert response.status == 503 and "injected by fault rule" in response.body["message"]
        assert records_of_customer(tables, customer_id) == []
    finally:
        cli("faults", "clear", rule["rules"][0]["id"])
    # AND a throttled invocation is API Gateway's 429 (every attempt: a console polling the API
    # may invoke the function meanwhile), and once the rule is gone the request goes through
    throttle = json.loads(cli("faults", "add", "OrderApiFunction", "throttle", "--json").stdout)
    try:
        assert api.post_order(body).status == 429
    finally:
        cli("faults", "clear", throttle["rules"][0]["id"])
    assert api.post_order(body).status == 201


def test_the_demo_s_invariants_plug_into_chaos_for_any_saga(stack: LocalStack, engine_settings: Settings):
    # GIVEN the demo as a scenario of the generic chaos: saga inputs of its own, its checker as invariants
    from sandbox.chaos import scenario
    from sandbox.saga_chaos import SagaChaosConfig
    from sandbox.testing import SandboxStack

    sandbox = SandboxStack(engine_settings, stack)
    # WHEN 150 executions run with faults on the saga's steps (error-after on a charge included)
    report = sandbox.chaos(
        SAGA,
        inputs=scenario.saga_orders,
        invariants=[scenario.nothing_lost_or_done_twice],
        config=SagaChaosConfig(executions=150, seed=4),
    )
    # THEN every check and the demo's invariants held
    assert report.is_held, {check.name: check.violations[:5] for check in report.checks if not check.is_held}
    assert report.injected_by_kind().get("error-after", 0) > 10
