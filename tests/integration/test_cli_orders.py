"""`sandbox orders`, `trace --last`, replays, hints and `status --json` through the `sandbox` script.

The commands run against the session's engine (its port and state folder), as plain output in a
pipe: no terminal, no COLUMNS, so rich would wrap at 80 columns if it wrapped at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.orders import call_api
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration


class Cli:
    """`sandbox` in a subprocess, pointed at the session's engine."""

    def __init__(self, settings: Settings):
        self.env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
        self.env.update(SANDBOX_PORT=str(settings.port), SANDBOX_STATE_DIR=str(settings.state_dir))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_sandbox(*args, env=self.env)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def all_at_once(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda args: self.run(*args), commands))


@pytest.fixture(scope="module")
def cli(stack: LocalStack, engine_settings: Settings) -> Cli:
    return Cli(engine_settings)


@pytest.fixture(scope="module")
def placed(cli: Cli) -> dict[str, list[str]]:
    """Four orders placed at once by four `sandbox order` processes: two complete, two fail."""
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    happy = ("order", "--customer", customer, "--json")
    failing = ("order", "--customer", customer, "--fail", "payment", "--json")
    results = cli.all_at_once(happy, failing, happy, failing)
    assert all(result.returncode == 0 for result in results), [result.stderr for result in results]
    documents = [json.loads(result.stdout) for result in results]
    return {
        status: [document["orderId"] for document in documents if document["status"] == status]
        for status in ("COMPLETED", "FAILED")
    }


def test_orders_prints_whole_ids_without_a_terminal(cli: Cli, placed: dict[str, list[str]]):
    # WHEN the orders are listed into a pipe
    result = cli.run("orders")
    # THEN every id is printed whole, one order per line, ready for `sandbox trace`
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["order", "customer", "status", "total", "created", "reason"]
    for status, order_ids in placed.items():
        for order_id in order_ids:
            (line,) = [line for line in lines if line.startswith(order_id)]
            assert f" {status} " in line
    assert "…" not in result.stdout


def test_orders_narrows_by_status_and_limit(cli: Cli, placed: dict[str, list[str]]):
    # WHEN only failed orders are asked for THEN every one listed failed, ours among them
    failed = cli.json("orders", "--status", "FAILED")["orders"]
    assert failed and {entry["status"] for entry in failed} == {"FAILED"}
    assert set(placed["FAILED"]) <= {entry["orderId"] for entry in failed}
    assert {entry["failureReason"] for entry in failed if entry["orderId"] in placed["FAILED"]} == {
        "InjectedFault: injected failure in payment"
    }
    # AND --limit keeps the newest (the status case does not matter)
    (newest_failed,) = cli.json("orders", "--status", "failed", "--limit", "1")["orders"]
    assert newest_failed == failed[0]
    assert [entry["orderId"] for entry in cli.json("orders", "--limit", "3")["orders"]] == [
        entry["orderId"] for entry in cli.json("orders")["orders"][:3]
    ]
    text = cli.run("orders", "--status", "COMPLETED", "--limit", "2").stdout.splitlines()
    assert len(text) == 3 and all(" COMPLETED " in line for line in text[1:])


def test_trace_last_and_trace_without_an_id_trace_the_latest_order(cli: Cli, placed: dict[str, list[str]]):
    # GIVEN the newest order (of the four placed at once, the one created last)
    (newest,) = cli.json("orders", "--limit", "1")["orders"]
    assert newest["orderId"] in placed["COMPLETED"] + placed["FAILED"]
    # WHEN tracing with --last, or with no id THEN that order is traced
    assert cli.json("trace", "--last")["orderId"] == newest["orderId"]
    plain = cli.run("trace")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[0].startswith(f"trace of order {newest['orderId']}")
    # AND an id with --last is a mistake said in one line
    both = cli.run("trace", newest["orderId"], "--last")
    assert both.returncode == 1 and "give an ORDER_ID or --last, not both" in both.stderr


def test_a_replayed_order_is_marked_as_a_replay(cli: Cli):
    # GIVEN three keys, each used for the first time by three processes at once
    keys = [f"replay-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    first = cli.all_at_once(*[("order", "--idempotency-key", key, "--no-wait", "--json") for key in keys])
    # WHEN each key is sent again, at once too
    again = cli.all_at_once(*[("order", "--idempotency-key", key, "--no-wait", "--json") for key in keys])
    # THEN the answers are the first responses, and only the second ones say they are replays
    for before, after in zip(first, again, strict=True):
        assert before.returncode == after.returncode == 0, before.stderr + after.stderr
        placed, replayed = json.loads(before.stdout), json.loads(after.stdout)
        assert placed.pop("replayed") is False and replayed.pop("replayed") is True
        assert placed == replayed
    # AND a followed replay says so in one line of plain text
    followed = cli.run("order", "--idempotency-key", keys[0])
    assert followed.returncode == 0, followed.stderr
    (line,) = [line for line in followed.stdout.splitlines() if "replayed:" in line]
    order_id = json.loads(first[0].stdout)["orderId"]
    assert line.startswith(f"order {order_id} replayed: the first response for this key")
    assert line.endswith("its saga:")


def test_an_unknown_product_is_hinted_with_the_catalog_not_a_price(cli: Cli):
    result = cli.run("order", "--item", "nosuch:1")
    assert result.returncode == 1
    error, hint = result.stderr.splitlines()
    assert error == "error: the order API answered 400: unknown productId: nosuch"
    assert hint.startswith(
        "hint: the demo catalog has espresso-beans, grinder, kettle, mug, espresso-machine"
    )
    assert "PRICE" not in result.stderr


def test_logs_of_an_unknown_order_is_an_error_naming_it(cli: Cli, placed: dict[str, list[str]]):
    unknown = cli.run("logs", "--order", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines()[0] == "error: order nope not found"
    known = cli.run("logs", "--order", placed["FAILED"][0])
    assert known.returncode == 0, known.stderr
    # (the charge's handler never ran: the failure is in the order's final status line, and the
    # refund found nothing to refund)
    assert "InjectedFault: injected failure in payment" in known.stdout, known.stdout
    assert "ChargePayment done" not in known.stdout and "NOTHING_TO_REFUND" in known.stdout


def test_status_json_puts_the_local_api_url_where_scripts_look(cli: Cli):
    stack = cli.json("status")["stack"]
    # THEN the stack's ApiUrl output is the URL that answers locally, as apiUrl is
    assert stack["outputs"]["ApiUrl"] == stack["apiUrl"]
    assert call_api("GET", f"{stack['outputs']['ApiUrl']}/orders").status == 200
