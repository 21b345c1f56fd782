"""`sandbox bench` on the session engine: a small faults run through the library and through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr

from sandbox.bench import (
    DEAD_LETTER_CHECK,
    DEAD_LETTERED,
    BenchConfig,
    BenchProgress,
    BenchReport,
    check_invariants,
    read_snapshot,
    run_bench,
)
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until
from tests.integration.conftest import outbox_paused

pytestmark = pytest.mark.integration
SANDBOX = str(Path(sys.executable).with_name("sandbox"))


@pytest.fixture(scope="module")
def faults_run(stack: LocalStack, engine_settings: Settings) -> tuple[BenchReport, list[BenchProgress]]:
    seen: list[BenchProgress] = []
    config = BenchConfig(orders=40, concurrency=8, mix="faults", seed=11, wait_seconds=180)
    return run_bench(stack, engine_settings.region, config, seen.append), seen


def test_a_faults_run_ends_as_planned_and_the_tables_hold(
    faults_run: tuple[BenchReport, list[BenchProgress]],
):
    # GIVEN 40 orders, a fifth meant to fail for business reasons, a fifth with injected faults
    # and one with a poisoned outbox record
    report, seen = faults_run
    summary = report.as_dict()
    # THEN every order was accepted and ended as planned
    assert summary["accepted"] == 40 and summary["refused"] == 0
    assert summary["unexpected"] == []
    assert summary["statusCounts"] == {"COMPLETED": 27, "FAILED": 12, DEAD_LETTERED: 1}
    assert summary["failureReasons"] == {
        "OutOfStockError": 4,
        "PaymentDeclinedError": 4,
        "InjectedFault": 4,
    }
    # AND the tables show a consistent end state
    assert report.verdict.holds, report.verdict.as_dict()
    assert summary["ok"] is True and summary["reason"] is None
    # AND it measured what it promises
    assert summary["latencyMs"]["p50"] <= summary["latencyMs"]["p95"] <= summary["latencyMs"]["p99"]
    assert summary["throughput"]["acceptedPerSecond"] > 0 and summary["throughput"]["completedPerSecond"] > 0
    resources = summary["resources"]
    assert resources["cpuSeconds"] > 0 and resources["peakRssMb"] > 0 and resources["peakWorkers"] >= 1
    assert 0 < resources["peakPssMb"] <= resources["peakRssMb"] and resources["pssAfterMb"] > 0
    # AND it reported its progress while it ran, ending with every order terminal
    assert [stage for stage in dict.fromkeys(p.stage for p in seen)] == ["planning", "placing", "finishing",
                                                                         "checking"]  # fmt: skip
    assert seen[-1].terminal == 40


def test_the_on_failure_queue_holds_exactly_the_poisoned_orders(
    faults_run: tuple[BenchReport, list[BenchProgress]], tables: dict[str, Any]
):
    report, _ = faults_run
    poisoned = sorted(str(o.order_id) for o in report.outcomes if o.planned.is_poisoned)
    assert len(poisoned) == 1
    # THEN the check names exactly the poisoned orders as dead-lettered
    (check,) = [c for c in report.as_dict()["verdict"]["checks"] if c["name"] == DEAD_LETTER_CHECK]
    assert check == {"name": DEAD_LETTER_CHECK, "holds": True, "skipped": None, "violations": [],
                     "subjects": poisoned}  # fmt: skip
    # AND their items stay PENDING (no saga ever started), which the run counts as their end
    for order_id in poisoned:
        item = tables["orders"].get_item(Key={"pk": f"ORDER#{order_id}", "sk": "ORDER"})["Item"]
        assert item["status"] == "PENDING"
    # AND the latency percentiles count only the orders that had a saga
    latencies = [o.latency for o in report.outcomes if o.latency is not None and not o.planned.is_poisoned]
    assert len(latencies) == 39 and report.as_dict()["latencyMs"]["max"] == round(max(latencies) * 1000, 1)


def test_latency_runs_from_the_post_to_the_status_stamp_in_the_order_item(
    faults_run: tuple[BenchReport, list[BenchProgress]], tables: dict[str, Any]
):
    report, _ = faults_run
    outcome = next(o for o in report.accepted if not o.planned.is_poisoned)
    item = tables["orders"].get_item(Key={"pk": f"ORDER#{outcome.order_id}", "sk": "ORDER"})["Item"]
    assert outcome.finished_at == datetime.fromisoformat(item["updatedAt"]).timestamp()
    assert outcome.latency is not None and 0 < outcome.latency < 180


def test_the_verdict_catches_a_failed_order_that_keeps_its_charge(
    faults_run: tuple[BenchReport, list[BenchProgress]],
    stack: LocalStack,
    engine_settings: Settings,
    tables: dict[str, Any],
):
    # GIVEN a FAILED order of the run, and a CHARGED payment written behind the saga's back
    report, _ = faults_run
    failed = next(o for o in report.outcomes if o.status == "FAILED")
    key = {"orderId": failed.order_id}
    before = tables["payments"].get_item(Key=key).get("Item")
    tables["payments"].put_item(Item={**key, "status": "CHARGED", "amount": Decimal("1.00")})
    try:
        # WHEN the run's tables are read again
        ids = [str(o.order_id) for o in report.accepted]
        poisoned = [str(o.order_id) for o in report.accepted if o.planned.is_poisoned]
        snapshot = read_snapshot(
            stack, engine_settings.region, ids, report.plan.stock, report.plan.top_ups, poisoned
        )
        verdict = check_invariants(snapshot)
    finally:
        if before:
            tables["payments"].put_item(Item=before)
        else:
            tables["payments"].delete_item(Key=key)
    # THEN exactly that order is named
    broken = {check.name: check.violations for check in verdict.broken}
    assert len(broken) == 1
    ((name, violations),) = broken.items()
    assert name.startswith("no FAILED order keeps a charge")
    assert violations == (f"{failed.order_id}: FAILED but keeps its charge",)


@pytest.fixture(scope="module")
def cli_env(stack: LocalStack, engine_settings: Settings) -> dict[str, str]:
    """`sandbox` pointed at the session engine through its state folder, as `sandbox order` finds it."""
    return {**os.environ, "SANDBOX_PORT": str(engine_settings.port),
            "SANDBOX_STATE_DIR": str(engine_settings.state_dir), "NO_COLOR": "1", "COLUMNS": "120"}  # fmt: skip


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SANDBOX, "bench", *args], env=env, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


def test_the_cli_prints_one_json_document_and_exits_0(cli_env: dict[str, str]):
    result = run_cli(
        cli_env, "--orders", "12", "--concurrency", "3", "--mix", "faults", "--seed", "5", "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["run"] | {"runId": None, "customerId": None} == {
        "runId": None, "customerId": None, "orders": 12, "concurrency": 3, "rate": None, "mix": "faults", "seed": 5,
    }  # fmt: skip
    assert sum(summary["statusCounts"].values()) == 12 == summary["accepted"]
    assert Counter(summary["plan"]["expected"]) == Counter(summary["statusCounts"])
    assert all(check["holds"] for check in summary["verdict"]["checks"])
    assert result.stderr == ""  # no progress bar under --json


def test_the_cli_prints_a_table_and_the_verdict(cli_env: dict[str, str]):
    result = run_cli(cli_env, "--orders", "5", "--concurrency", "2", "--rate", "10")
    assert result.returncode == 0, result.stderr
    assert "POST → terminal" in result.stdout
    assert "✓ none failed that was not meant to" in result.stdout
    assert "✓ every accepted order is terminal" in result.stdout


def test_the_cli_prints_the_calls_each_order_made_by_service_and_operation(cli_env: dict[str, str]):
    # GIVEN a small happy run, through the CLI
    result = run_cli(cli_env, "--orders", "6", "--concurrency", "2", "--json")
    assert result.returncode == 0, result.stderr
    calls = json.loads(result.stdout)["callsPerOrder"]
    per_operation = {(e["service"], e["operation"]): e["perOrder"] for e in calls["byOperation"]}
    # THEN each order made its one POST, its one catalog read and started its one saga: the run's
    # own polling of the orders table (BatchGetItem too) is not counted as the orders'
    assert calls["orders"] == 6
    assert per_operation[("apigateway", "POST /orders")] == 1.0
    assert per_operation[("dynamodb", "BatchGetItem")] == 1.0
    assert per_operation[("stepfunctions", "StartExecution")] == 1.0
    assert per_operation[("dynamodb", "TransactWriteItems")] == 2.0  # the outbox and the reservation
    assert ("dynamodb", "GetItem") not in per_operation  # no step read back what it had just written
    assert calls["calls"] == pytest.approx(sum(e["count"] for e in calls["byOperation"]) / 6, abs=0.01)
    # AND six functions ran once for each order (the publisher once for each stream batch)
    assert sorted(e["perOrder"] for e in calls["byFunction"])[1:] == [1.0] * 6
    # AND the table says so too
    table = run_cli(cli_env, "--orders", "2", "--concurrency", "1")
    assert table.returncode == 0, table.stderr
    assert "calls/order" in table.stdout and "StartExecution 1" in table.stdout


@pytest.fixture
def paused_outbox(stack: LocalStack, engine_settings: Settings, tables: dict[str, Any]) -> Iterator[None]:
    """The outbox stream mapping disabled: orders are accepted but stay PENDING until it resumes.

    On resuming, the orders placed meanwhile are waited for, so no later test sees them move stock
    (bench orders already PENDING before, the poisoned ones of earlier runs, stay so for good: they
    are not waited for; their faults were rules, so the orders themselves do not say so).
    """

    def pending() -> set[str]:
        items = tables["orders"].scan(
            FilterExpression=Attr("customerId").begins_with("bench-") & Attr("status").eq("PENDING"),
            ConsistentRead=True,
        )["Items"]
        return {str(item["pk"]) for item in items}

    before = pending()
    try:
        with outbox_paused(stack, engine_settings):
            yield
    finally:
        wait_until(
            lambda: not pending() - before,
            timeout=120,
            what="the orders placed while the outbox was paused to finish",
        )


def test_a_run_that_outlasts_its_wait_is_one_red_line_and_exit_1(
    cli_env: dict[str, str], paused_outbox: None
):
    # GIVEN orders that cannot finish yet (their outbox records wait in the paused stream)
    # WHEN the bench may not wait long enough for them
    result = run_cli(cli_env, "--orders", "2", "--concurrency", "2", "--wait-seconds", "0.5")
    # THEN it says what it waited for, in one line, with exit code 1 and no traceback
    assert result.returncode == 1, result.stdout
    assert "every accepted order (2) to reach COMPLETED or FAILED" in result.stderr
    assert "Traceback" not in result.stderr
