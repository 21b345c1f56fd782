"""The pytest plugin's promises: its assertions fail with the trace, poisoned orders, no idle cost."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sandbox.testing import (
    SagaAssertionError,
    SandboxStack,
    assert_compensated,
    assert_exactly_once,
    assert_no_dead_letters,
)

pytestmark = pytest.mark.integration


def test_a_wrong_expectation_fails_with_a_message_and_the_orders_trace(place_order):
    order = place_order(fail="shipping")
    with pytest.raises(SagaAssertionError) as failed:
        assert_compensated(order, ["ReleaseInventory"])
    message = str(failed.value)
    assert message.startswith(f"order {order.order_id}: expected compensations ['ReleaseInventory'], ")
    assert "the saga ran ['CancelShipment', 'RefundPayment', 'ReleaseInventory']" in message
    assert f"trace of order {order.order_id}" in message and "CreateShipment" in message
    assert message.rstrip().splitlines()[-1].startswith("order FAILED")


def test_effects_that_are_not_exactly_once_are_named(place_order, sandbox_stack: SandboxStack):
    # GIVEN a completed order whose product's stock someone else then moves
    order = place_order()
    product = order.run.request.items[0]["productId"]
    sandbox_stack.client("dynamodb").update_item(
        TableName=sandbox_stack.outputs["InventoryTableName"], Key={"productId": {"S": product}},
        UpdateExpression="SET stock = stock - :one", ExpressionAttributeValues={":one": {"N": "1"}},
    )  # fmt: skip
    # THEN exactly-once names the stock that is off
    with pytest.raises(SagaAssertionError, match=f"stock of {product}: expected 9, found 8"):
        assert_exactly_once(order)


def test_a_poisoned_order_is_dead_lettered_and_named_by_the_assertion(place_order, sandbox_stack):
    order = place_order(poison=True)
    assert order.status == "PENDING" and order.run.dead_letter is not None
    with pytest.raises(SagaAssertionError, match=order.order_id):
        assert_no_dead_letters(sandbox_stack, order)


def test_a_run_that_asks_for_no_fixture_starts_no_engine(tmp_path):
    # GIVEN a test file that uses none of the plugin's fixtures
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    env = {**os.environ, "SANDBOX_STATE_DIR": str(tmp_path / "state")}
    # WHEN pytest runs it, with the plugin loaded (as every run in this environment does)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    # THEN it passes, no engine state was written, and the plugin was loaded
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "state").exists()
    plugins = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "--sandbox-engine", "embedded",
                              str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert plugins.returncode == 0, plugins.stderr  # the option exists: the plugin is registered
