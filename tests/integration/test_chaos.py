"""`sandbox chaos` on the session engine: a seeded run of 300 orders under every fault, its checker, and
deliberately broken variants the checker must catch, naming the order and the invariant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sandbox.bench import BenchProgress, OrderOutcome
from sandbox.chaos import (
    AT_MOST_ONCE,
    FAULT_KINDS,
    NO_SECOND_ORDER,
    ONE_SAGA,
    ChaosConfig,
    ChaosReport,
    ChaosVerdict,
    check,
    run_chaos,
)
from sandbox.orders import OrdersClient
from sandbox.saga import execution_arn
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

pytestmark = pytest.mark.integration
SANDBOX = str(Path(sys.executable).with_name("sandbox"))
# What CI proves on every run: at least 300 orders from 8 clients, every fault kind mixed in.
CI_RUN = ChaosConfig(orders=300, concurrency=8, seed=11, wait_seconds=300)


@pytest.fixture(scope="module")
def chaos_run(stack: LocalStack, engine_settings: Settings) -> tuple[ChaosReport, list[BenchProgress]]:
    seen: list[BenchProgress] = []
    return run_chaos(stack, engine_settings.region, CI_RUN, seen.append), seen


def check_again(report: ChaosReport, stack: LocalStack, settings: Settings) -> ChaosVerdict:
    """The checker run again on the run's records, as they are now (each order's faults from the plan:
    they are rules at the invoke boundary, so the order itself does not carry them)."""
    ids = [str(o.order_id) for o in report.load.accepted]
    faults = {str(o.order_id): o.planned.faults for o in report.outcomes if o.order_id and o.planned.faults}
    return check(stack, settings.region, ids, stock_before=report.plan.stock, top_ups=report.plan.top_ups,
                 customer_prefix=report.customer_prefix, faults=faults)  # fmt: skip


def broken(verdict: ChaosVerdict) -> dict[str, tuple[str, ...]]:
    return {c.name: c.violations for c in verdict.broken}


def test_a_seeded_run_of_300_orders_under_every_fault_holds_every_invariant(
    chaos_run: tuple[ChaosReport, list[BenchProgress]],
):
    report, seen = chaos_run
    summary = report.as_dict()
    # GIVEN 300 orders from 8 clients, with every fault kind, both business failures and repeated POSTs
    kinds = summary["plan"]["kinds"]
    assert set(FAULT_KINDS) | {"out-of-stock", "declined"} <= set(kinds), kinds
    assert summary["duplicates"]["sent"] >= 1
    # THEN the API accepted every order, and a repeated POST never got another order
    assert summary["accepted"] == 300 and summary["refused"] == 0
    assert summary["duplicates"]["others"] == []
    # AND every replay ended, and every execution had ended before the checker read the records
    assert summary["replays"]["count"] == kinds["replay"] and summary["replays"]["errors"] == {}
    # AND the checker, reading only the system's records, finds every invariant holding
    failing = {c["name"]: c["violations"][:5] for c in summary["verdict"]["checks"] if not c["holds"]}
    assert failing == {}, f"{failing}\nreproduce: {summary['reproduce']}"
    assert not any(c["skipped"] for c in summary["verdict"]["checks"])
    assert summary["ok"] is True and summary["reason"] is None
    # AND every order ended as planned: the planner and the checker apply one rule
    assert sum(summary["statusCounts"].values()) == 300
    assert summary["statusCounts"] == summary["plan"]["expected"]
    # AND it reported its progress through each stage
    stages = list(dict.fromkeys(p.stage for p in seen))
    assert stages == ["planning", "placing", "finishing", "replaying", "settling", "checking"]


def plain_completed(report: ChaosReport, nth: int = 0) -> OrderOutcome:
    """The nth COMPLETED order of the run that carried no fault and was sent once."""
    plain = [
        o
        for o in report.outcomes
        if o.status == "COMPLETED" and not o.planned.faults and not o.planned.duplicate
    ]
    return plain[nth]


@contextmanager
def item_changed(
    stack: LocalStack, settings: Settings, output: str, order_id: str, **changes: Any
) -> Iterator[None]:
    """The table's item of an order changed behind the saga's back, and restored after."""
    table = stack.client("dynamodb", settings.region)
    name = stack.outputs[output]
    key = {"orderId": {"S": order_id}}
    before = table.get_item(TableName=name, Key=key, ConsistentRead=True)["Item"]
    values = {
        f":{field}": ({"N": str(v)} if isinstance(v, Decimal) else {"S": v}) for field, v in changes.items()
    }
    table.update_item(
        TableName=name,
        Key=key,
        UpdateExpression="SET " + ", ".join(f"#{field} = :{field}" for field in changes),
        ExpressionAttributeNames={f"#{field}": field for field in changes},
        ExpressionAttributeValues=values,
    )
    try:
        yield
    finally:
        table.put_item(TableName=name, Item=before)


def test_a_charge_sent_twice_and_a_refund_removed_are_named_with_their_orders(
    chaos_run: tuple[ChaosReport, list[BenchProgress]], stack: LocalStack, engine_settings: Settings
):
    # GIVEN a COMPLETED order charged twice its total (a charge sent twice) and a FAILED order whose
    # refund is gone (its charge stands), written into the tables behind the saga's back
    report, _ = chaos_run
    completed = plain_completed(report)
    refunded = next(
        o
        for o in report.outcomes
        if o.planned.expected_reason == "InjectedFault: injected failure in shipping"
    )
    total = Decimal(str(completed.planned.total))
    with (
        item_changed(stack, engine_settings, "PaymentsTableName", str(completed.order_id), amount=total * 2),
        item_changed(stack, engine_settings, "PaymentsTableName", str(refunded.order_id), status="CHARGED"),
    ):
        # WHEN the checker reads the run's records again
        verdict = check_again(report, stack, engine_settings)
    # THEN it names exactly those orders, each under the invariant it breaks
    found = broken(verdict)
    assert found[AT_MOST_ONCE] == (
        f"{completed.order_id}: charged {total * 2:.2f} (CHARGED), the order's total is {total:.2f}",
    )
    assert found["every COMPLETED order is charged once, for its total"] == (
        f"{completed.order_id}: charged {total * 2:.2f}, total {total:.2f}",
    )
    assert found["no FAILED order keeps a charge, shipment or reservation"] == (
        f"{refunded.order_id}: FAILED but keeps its charge",
    )
    assert set(verdict.violations_by_order()) == {completed.order_id, refunded.order_id}
    # AND once the records are restored, they hold again
    assert check_again(report, stack, engine_settings).holds


def test_a_second_saga_for_an_order_is_caught_though_idempotent_steps_undo_its_harm(
    chaos_run: tuple[ChaosReport, list[BenchProgress]], stack: LocalStack, engine_settings: Settings
):
    # GIVEN a publisher that forgot to name the saga after the order: a second execution of a
    # COMPLETED order, named otherwise, with the same input
    report, _ = chaos_run
    order_id = str(plain_completed(report, 1).order_id)
    sfn = stack.client("stepfunctions", engine_settings.region)
    machine = stack.outputs["StateMachineArn"]
    original = sfn.describe_execution(executionArn=execution_arn(machine, order_id))
    name = f"rogue-{uuid.uuid4().hex[:8]}"
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input=original["input"])["executionArn"]
    wait_until(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", timeout=60,
               what=f"the second saga of order {order_id} to end")  # fmt: skip
    # WHEN the checker reads the run's records again
    verdict = check_again(report, stack, engine_settings)
    # THEN it names the order and the second saga; the steps' idempotency left nothing else wrong
    assert broken(verdict) == {ONE_SAGA: (f"{order_id}: the saga also ran as {name}",)}
    assert verdict.as_dict()["violatingOrders"] == [
        {"orderId": order_id, "invariants": [ONE_SAGA], "trace": f"sandbox trace {order_id}"}
    ]


def test_a_repeated_post_that_lost_its_key_is_a_second_order_and_a_second_charge(
    chaos_run: tuple[ChaosReport, list[BenchProgress]], stack: LocalStack, engine_settings: Settings
):
    # GIVEN an API whose idempotency failed: the same POST again, as if it carried no key
    report, _ = chaos_run
    first = plain_completed(report, 2)
    customer = f"{report.customer_prefix}{first.planned.index:05d}"
    second = OrdersClient(stack.api_url).place_order(first.planned.payload(customer))["orderId"]
    wait_until(
        lambda: stack.client("dynamodb", engine_settings.region).get_item(
            TableName=stack.outputs["OrdersTableName"], Key={"pk": {"S": f"ORDER#{second}"}, "sk": {"S": "ORDER"}},
            ConsistentRead=True,
        )["Item"]["status"]["S"] == "COMPLETED",
        timeout=60, what=f"the second order {second} to complete",
    )  # fmt: skip
    # WHEN the checker reads the run's records again
    verdict = check_again(report, stack, engine_settings)
    # THEN it names the second order, as an order and as a charge of the same request's customer
    made = f"of customer {customer}, whose one request made order {first.order_id}"
    found = broken(verdict)
    assert found[NO_SECOND_ORDER] == (f"{second}: an order {made}",)
    assert f"{second}: a charge {made}" in found[AT_MOST_ONCE]
    assert f"{second}: a shipment {made}" in found[AT_MOST_ONCE]
    assert verdict.violations_by_order()[second] == [NO_SECOND_ORDER, AT_MOST_ONCE]


@pytest.fixture(scope="module")
def cli_env(stack: LocalStack, engine_settings: Settings) -> dict[str, str]:
    return {**os.environ, "SANDBOX_PORT": str(engine_settings.port),
            "SANDBOX_STATE_DIR": str(engine_settings.state_dir), "NO_COLOR": "1", "COLUMNS": "160"}  # fmt: skip


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SANDBOX, "chaos", *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


def test_the_cli_prints_one_json_document_and_exits_0(cli_env: dict[str, str]):
    result = run_cli(cli_env, "--orders", "12", "--concurrency", "4", "--seed", "5", "--faults",
                     "fail,flaky,replay", "--duplicate-requests", "0.25", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["accepted"] == 12
    assert summary["run"]["faults"] == ["fail", "flaky", "replay"] and summary["duplicates"]["sent"] == 3
    assert summary["reproduce"].startswith("sandbox chaos --orders 12 --concurrency 4 --seed 5 --faults ")
    assert all(check["holds"] for check in summary["verdict"]["checks"])
    assert result.stderr == ""  # no progress under --json


def test_the_cli_prints_the_counts_and_each_invariant(cli_env: dict[str, str]):
    result = run_cli(cli_env, "--orders", "6", "--concurrency", "3", "--faults", "none")
    assert result.returncode == 0, result.stderr
    assert "POST → terminal" in result.stdout and "outcomes" in result.stdout
    assert f"✓ {ONE_SAGA}" in result.stdout and f"✓ {NO_SECOND_ORDER}" in result.stdout
    assert "chaos: checking…" in result.stderr  # without a terminal: one line per stage


def test_an_unknown_fault_is_one_red_line_and_exit_1(cli_env: dict[str, str]):
    result = run_cli(cli_env, "--faults", "fail,explode")
    assert result.returncode == 1
    assert "unknown explode" in result.stderr and "Traceback" not in result.stderr
