"""Saga histories on the real engine: the demo's golden histories, a changed run's readable diff,
re-recording, and a history read through the AWS target (offline) equal to the local one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sandbox.faults import Attempts, FaultSpec
from sandbox.histories import HistoryCheck, HistoryMismatchError, LocalHistories, load_history
from sandbox.settings import Settings
from sandbox.testing import Execution, OrderResult, SandboxStack
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration

# What differs between two runs of one scenario and is no placeholder: each test order buys a
# product of its own, and shipping makes a tracking id from the order id.
MASKS = ["$..productId", "$..trackingId"]
CUSTOMER = "history-customer"
SAGA = "OrderSagaStateMachine"
SCARCE = "history-scarce-product"


def demo_scenarios(sandbox: SandboxStack) -> dict[str, Callable[[], OrderResult]]:
    """The demo's scenarios by golden history name: each places one order and waits for its saga."""

    def place(**options: Any) -> Callable[[], OrderResult]:
        return lambda: sandbox.place(customer=CUSTOMER, **options)

    return {
        "happy": place(),
        "fail-inventory": place(fail="inventory"),
        "fail-payment": place(fail="payment"),
        "fail-shipping": place(fail="shipping"),
        "flaky-payment": place(flaky={"payment": 2}),
        "hang-payment": place(hang="payment"),
        # Over the payment provider's limit (10,000): declined, a business error.
        "payment-declined": lambda: sandbox.place([(sandbox.make_product(stock=10, price="6000.00"), 2)],
                                                  customer=CUSTOMER),
        "out-of-stock": lambda: sandbox.place([(scarce_product(sandbox), 2)], customer=CUSTOMER),
    }  # fmt: skip


def scarce_product(sandbox: SandboxStack) -> str:
    """A product with one unit in stock, always the same id: the refusal names it (no order takes it)."""
    sandbox.client("dynamodb").put_item(
        TableName=sandbox.outputs["InventoryTableName"],
        Item={"productId": {"S": SCARCE}, "name": {"S": SCARCE}, "price": {"N": "5"}, "stock": {"N": "1"}},
    )
    return SCARCE


def test_the_demo_scenarios_match_their_golden_histories(
    sandbox_stack: SandboxStack, assert_history: HistoryCheck, sandbox_clock: Any
) -> None:
    # GIVEN every scenario of the demo, each run twice, all at once; then the hanging one's two
    # runs at once on the saga clock at 10x (its history is the same at any scale: 3 s, not 25)
    scenarios = demo_scenarios(sandbox_stack)
    runs = [(name, run) for name, run in scenarios.items() for _ in range(2) if name != "hang-payment"]
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        placed = list(pool.map(lambda named: (named[0], named[1]()), runs))
    sandbox_clock(10)
    with ThreadPoolExecutor(max_workers=2) as pool:
        placed += list(pool.map(lambda _: ("hang-payment", scenarios["hang-payment"]()), range(2)))
    # THEN each run's history is its golden one (histories/NAME.json at the project's root), so
    # both runs of a scenario tell the same history
    failures = []
    for name, order in placed:
        try:
            assert_history(order, name, mask=MASKS)
        except HistoryMismatchError as error:
            failures.append(str(error))
    assert not failures, "\n\n".join(failures)


def execution_of(
    sandbox: SandboxStack, data: dict[str, Any], faults: list[FaultSpec] | None = None
) -> Callable[[], Execution]:
    """A job that runs the demo's saga on ``data``, its execution named after the order."""
    name = data["order"]["orderId"]
    return lambda: sandbox.execute(SAGA, data, name=name, faults=faults or [], wait_seconds=120)


def run_all(jobs: list[Callable[[], Execution]]) -> list[Execution]:
    """Run the executions at once (the project's rule: what runs executions is tested concurrently)."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: job(), jobs))


@pytest.fixture
def cli(sandbox_stack: SandboxStack) -> Callable[..., Any]:
    """`sandbox ...` against the session's engine."""
    settings = sandbox_stack.settings
    env = {**os.environ, "SANDBOX_PORT": str(settings.port), "SANDBOX_STATE_DIR": str(settings.state_dir)}
    env.pop("AWS_PROFILE", None)  # the AWS target's test credentials are the environment's keys
    return lambda *args, **extra: run_sandbox(*args, env={**env, **extra})


def test_a_changed_run_fails_with_a_readable_diff_until_it_is_recorded_again(
    sandbox_stack: SandboxStack,
    saga_input: Callable[..., dict[str, Any]],
    cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # GIVEN a happy run and a failed payment, recorded; then the same scenarios changed: the charge
    # needs a retry (its first attempt meets a transient error), the payment fails with another error
    def run(faults: list[FaultSpec]) -> Callable[[], Execution]:
        return execution_of(sandbox_stack, saga_input(), faults)

    transient = FaultSpec("ChargePayment", "error", Attempts(1, 1), error="Lambda.ServiceException")
    failing = FaultSpec("ChargePayment", "error", Attempts())
    other_error = FaultSpec("ChargePayment", "error", Attempts(), error="PaymentGatewayDownError")
    happy, retried, failed, other = run_all([run([]), run([transient]), run([failing]), run([other_error])])
    reader = LocalHistories(sandbox_stack.stack, sandbox_stack.region, sandbox_stack.settings.stack_name)
    record = HistoryCheck(reader, tmp_path, update=True)
    record(happy, "happy", mask=MASKS)
    record(failed, "fail-payment", mask=MASKS)
    check = HistoryCheck(reader, tmp_path)
    check(happy, "happy")
    # WHEN the retried run is checked against the happy history
    with pytest.raises(HistoryMismatchError) as extra_retry:
        check(retried, "happy")
    # THEN the assertion says which state, how many attempts, and what the first one met
    assert "ChargePayment: 2 attempts, expected 1 (1 extra retry; extra: attempt 2 succeeded)" in str(
        extra_retry.value
    )
    assert "ChargePayment attempt 1: failed with Lambda.ServiceException" in str(extra_retry.value)
    assert "pytest --sandbox-update-histories" in str(extra_retry.value)
    # AND `sandbox history diff` says the same and exits 1
    diffed = cli("history", "diff", str(tmp_path / "happy.json"), retried.name)
    assert diffed.returncode == 1, diffed.stderr
    assert "1 extra retry" in diffed.stdout and "Traceback" not in diffed.stderr
    # WHEN the payment fails with another error: the error that changed is named
    with pytest.raises(HistoryMismatchError) as changed:
        check(other, "fail-payment")
    assert "ChargePayment attempt 1: failed with PaymentGatewayDownError" in str(changed.value)
    assert "expected failed with InjectedFault" in str(changed.value)
    as_json = cli("history", "diff", str(tmp_path / "fail-payment.json"), other.arn, "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["isSame"] is False
    assert {"attempt", "catch"} <= {difference["kind"] for difference in report["differences"]}
    # WHEN the changed runs are recorded again: the checks and the diff pass
    record(retried, "happy")
    record(other, "fail-payment")
    check(retried, "happy")
    check(other, "fail-payment")
    again = cli("history", "diff", str(tmp_path / "happy.json"), retried.name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the histories are the same" in again.stdout


def test_a_history_saved_through_the_aws_target_matches_the_local_one(
    sandbox_stack: SandboxStack,
    engine_settings: Settings,
    saga_input: Callable[..., dict[str, Any]],
    cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # GIVEN the same scenario run twice, at once
    inputs = [saga_input(), saga_input()]
    local_run, aws_run = run_all([execution_of(sandbox_stack, data) for data in inputs])
    # WHEN one is saved from the local stack, the other through the AWS target (offline: the AWS
    # code path, credentials and all, pointed at the engine's endpoint)
    local_file, aws_file = tmp_path / "local.json", tmp_path / "aws.json"
    # (each input has a customer of its own)
    masks = [part for mask in [*MASKS, "$.order.customerId"] for part in ("--mask", mask)]
    saved = cli("history", "save", local_run.name, "--output", str(local_file), *masks)
    assert saved.returncode == 0, saved.stderr
    aws_env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": engine_settings.region}  # fmt: skip
    through_aws = cli(
        "history", "save", aws_run.arn, "--output", str(aws_file), *masks,
        "--target", "aws", "--endpoint-url", sandbox_stack.endpoint_url, "--json", **aws_env,
    )  # fmt: skip
    assert through_aws.returncode == 0, through_aws.stderr
    assert json.loads(through_aws.stdout)["source"] == f"execution {aws_run.arn}"
    # THEN the two histories are the same
    diffed = cli("history", "diff", str(local_file), str(aws_file))
    assert diffed.returncode == 0, diffed.stdout + diffed.stderr
    assert "the histories are the same" in diffed.stdout
    # AND the AWS one does not pretend to know the faults injected there
    assert load_history(aws_file)["injectedFaults"] is None
    assert load_history(local_file)["injectedFaults"] == []


def test_history_commands_say_what_is_missing_in_one_line(cli: Callable[..., Any], tmp_path: Path) -> None:
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    unknown = cli("history", "show", missing)
    assert unknown.returncode == 1
    assert f"{missing!r} is neither a saved history" in unknown.stderr and "Traceback" not in unknown.stderr
    no_file = cli("history", "diff", str(tmp_path / "gone.json"), missing)
    assert no_file.returncode == 1 and "no saved history" in no_file.stderr
    no_name = cli("history", "save", missing)
    assert no_name.returncode == 1 and "give --as NAME or --output FILE" in no_name.stderr
