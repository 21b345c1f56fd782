"""Every README command, run as a person runs it: the `sandbox` console script in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine import find_free_port, is_process_alive
from sandbox.engine.probes import running_group_members
from sandbox.prewarm import engine_workers
from sandbox.settings import Settings
from sandbox.waiting import wait_until
from tests.processes import CLI_TIMEOUT, run_sandbox

pytestmark = pytest.mark.integration
SANDBOX = str(Path(sys.executable).with_name("sandbox"))


def is_group_listed(pgid: int) -> bool:
    """Whether any process of the group exists, zombies included."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Cli:
    """Runs `sandbox` against its own engine (own port and state folder)."""

    def __init__(self, port: int, state_dir: Path):
        self.env = {**os.environ, "SANDBOX_PORT": str(port), "SANDBOX_STATE_DIR": str(state_dir)}

    def run(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return run_sandbox(*args, env=self.env, timeout=timeout)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    runner = Cli(find_free_port(), tmp_path_factory.mktemp("cli-state"))
    yield runner
    runner.run("down")


def test_up_starts_the_engine_and_deploys(cli: Cli):
    summary = cli.json("up")
    assert summary["engine"]["isNew"] is True
    assert summary["stack"]["isChanged"] is True
    assert summary["stack"]["apiUrl"].startswith(summary["engine"]["endpoint"])
    assert summary["seededProducts"] == 5
    # AND one worker of each of the stack's seven functions starts in the background, before any order
    assert len(summary["prewarming"]) == 7
    endpoint = summary["engine"]["endpoint"]

    def warmed() -> dict[str, Any] | None:
        report = engine_workers(endpoint)
        return report if report and not report["prewarm"]["pending"] else None

    report = wait_until(warmed, timeout=60, what="the stack's functions to be warmed")
    assert sorted(report["prewarm"]["warmed"]) == sorted(summary["prewarming"])
    assert report["prewarm"]["failed"] == {}
    assert sorted({worker["function"] for worker in report["workers"]}) == sorted(summary["prewarming"])


def test_up_again_is_a_no_op_that_says_so(cli: Cli):
    result = cli.run("up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert "unchanged" in result.stdout
    # without a terminal, no progress lines ("deploying…") that would read as results
    assert "…" not in result.stdout + result.stderr


def test_status_shows_engine_and_outputs(cli: Cli):
    report = cli.json("status")
    assert report["engine"]["running"] is True
    outputs = report["stack"]["outputs"]
    assert {"ApiId", "OrdersTableName", "StateMachineArn"} <= set(outputs)


def test_order_completes(cli: Cli):
    result = cli.json("order")
    assert result["status"] == "COMPLETED"
    assert [step["name"] for step in result["steps"]] == [
        "ReserveInventory",
        "ChargePayment",
        "CreateShipment",
        "MarkOrderCompleted",
    ]
    assert all({"name", "status", "attempts", "durationMs"} <= set(step) for step in result["steps"])
    assert result["compensations"] == []
    assert result["elapsedMs"] > 0


def test_order_fail_payment_shows_compensation(cli: Cli):
    result = cli.run("order", "--fail", "payment")
    assert result.returncode == 0, result.stderr
    # (the failed charge is undone too: an injected failure is no business error, it may have landed)
    assert "RefundPayment (compensation)" in result.stdout
    assert "ReleaseInventory (compensation)" in result.stdout
    assert "FAILED" in result.stdout
    data = cli.json("order", "--fail", "payment")
    assert data["status"] == "FAILED"
    assert data["failureReason"].startswith("InjectedFault: injected failure in payment")
    assert data["compensations"] == ["RefundPayment", "ReleaseInventory"]


def test_order_flaky_retries_and_completes(cli: Cli):
    data = cli.json("order", "--flaky", "shipping:2", "--item", "kettle:1")
    assert data["status"] == "COMPLETED"
    shipping = next(step for step in data["steps"] if step["name"] == "CreateShipment")
    assert shipping["attempts"] == 3


def test_order_with_idempotency_key_replays(cli: Cli):
    first = cli.json("order", "--idempotency-key", "readme-key", "--no-wait")
    again = cli.json("order", "--idempotency-key", "readme-key", "--no-wait")
    # the first response, replayed, and marked as a replay
    assert (first.pop("replayed"), again.pop("replayed")) == (False, True)
    assert first == again


def test_orders_lists_what_was_placed(cli: Cli):
    listed = cli.json("orders")["orders"]
    assert {"COMPLETED", "FAILED"} <= {entry["status"] for entry in listed}
    result = cli.run("orders")
    assert result.returncode == 0 and "COMPLETED" in result.stdout


def test_mistakes_are_one_line_and_non_zero(cli: Cli):
    for args, words in [
        (("order", "--item", "mug:lots"), "not a whole number"),
        (("order", "--fail", "billing"), "inventory, payment, shipping"),
        (("order", "--item", "teapot:1"), "unknown productId: teapot"),
        (("order", "--item", "mug:1:0.01"), "price of mug is 12.00, not 0.01: prices come from the catalog"),
    ]:
        result = cli.run(*args)
        assert result.returncode == 1
        assert words in result.stderr
        assert "Traceback" not in result.stderr


def test_up_on_a_busy_port_says_so(cli: Cli, tmp_path: Path):
    busy_port = int(cli.env["SANDBOX_PORT"])
    other = Cli(busy_port, tmp_path)
    result = other.run("up")
    assert result.returncode == 1
    assert f"port {busy_port} is already in use" in result.stderr


def test_business_failures_from_the_readme(cli: Cli):
    # Runs before `down` (module order). Over the card limit: declined, reservation released.
    declined = cli.run("order", "--item", "espresso-machine:5", "--json")
    assert declined.returncode == 1
    assert json.loads(declined.stdout)["compensations"] == ["ReleaseInventory"]
    # More than in stock: out of stock, nothing to undo.
    short = cli.run("order", "--item", "espresso-machine:9")
    assert short.returncode == 1
    assert "OutOfStockError" in short.stderr


def test_infrastructure_faults_dlq_and_reset_from_the_readme(cli: Cli):
    # Faults combine; the effects stay exactly-once.
    combined = cli.json("order", "--duplicate-delivery", "--crash", "publisher", "--timeout", "payment")
    assert combined["status"] == "COMPLETED"
    replayed = cli.json("order", "--replay")
    assert replayed["replay"]["status"] == "SUCCEEDED"
    # A poisoned record ends in the on-failure queue; dlq lists it and redrive sends it back.
    poisoned = cli.json("order", "--poison")
    assert poisoned["deadLetter"]["condition"] == "RetryAttemptsExhausted"
    listed = cli.json("dlq")["deadLetters"]
    assert poisoned["orderId"] in [order for letter in listed for order in letter["orderIds"]]
    redriven = cli.json("dlq", "--redrive")["redriven"]
    assert all(entry["redriven"] for entry in redriven)
    assert cli.json("dlq")["deadLetters"] == []
    # reset empties everything and reseeds; it never runs against AWS.
    summary = cli.json("reset")
    assert summary["seededProducts"] == 5 and summary["deletedItems"]["Orders"] > 0
    assert cli.json("orders")["orders"] == []
    refused = cli.run("reset", "--target", "aws")
    assert refused.returncode == 1 and "never runs against AWS" in refused.stderr


def test_up_on_another_port_while_the_engine_runs_is_refused(cli: Cli):
    # GIVEN the engine of this state folder runs on its port
    port = int(cli.env["SANDBOX_PORT"])
    other = find_free_port()
    # WHEN `up` asks for another port THEN it refuses in one line, and the engine is left as it was
    result = cli.run("up", "--port", str(other))
    assert result.returncode == 1
    assert f"runs on port {port}, not {other}" in result.stderr
    assert "sandbox down" in result.stderr and "SANDBOX_STATE_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli.json("status")["engine"]["port"] == port


def test_down_stops_the_engine_and_order_then_says_run_up(cli: Cli):
    state_dir = Settings.load(state_dir=Path(cli.env["SANDBOX_STATE_DIR"])).state_dir
    pid = json.loads((state_dir / "engine.json").read_text())["pid"]
    # The engine unpacks each Lambda worker's code into its own temp folder, in the state folder.
    assert list((state_dir / "tmp").glob("ministack-lambda-*"))
    result = cli.run("down")
    assert result.returncode == 0 and f"pid {pid}" in result.stdout
    # Neither the engine nor any Lambda worker of its process group runs, and their folders are gone.
    assert running_group_members(pid) == []
    assert not (state_dir / "tmp").exists()
    # What exited is reaped by init (late on some machines): then nothing of the group is left.
    wait_until(lambda: not is_group_listed(pid), timeout=30, what=f"init to reap process group {pid}")
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert cli.json("status")["engine"]["running"] is False
    after = cli.run("order")
    assert after.returncode == 1
    assert "sandbox up" in after.stderr


def test_a_dead_engine_is_reported_with_its_log_and_up_restarts_it(cli: Cli):
    # GIVEN an engine that died without `sandbox down`
    assert cli.run("up").returncode == 0
    state_file = Path(cli.env["SANDBOX_STATE_DIR"]) / "engine.json"
    pid = json.loads(state_file.read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not is_process_alive(pid), timeout=10, what="the engine to die")
    # WHEN an order is placed
    result = cli.run("order")
    # THEN one line says so, with a hint and the engine log's last lines
    assert result.returncode == 1
    assert f"(pid {pid}) has exited" in result.stderr
    assert "sandbox up" in result.stderr
    assert "Traceback" not in result.stderr
    # AND `sandbox up` starts a new engine
    again = cli.json("up")
    assert again["engine"]["isNew"] is True
    assert cli.run("down").returncode == 0
