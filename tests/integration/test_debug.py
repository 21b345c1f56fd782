"""`sandbox debug`: a real DAP client attaches to a step of a running saga, stops at a breakpoint in
the step's source file, holds it past the Task's TimeoutSeconds, and the saga goes on unharmed."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sandbox.debugging import DebugRoute
from sandbox.engine import find_free_port
from sandbox.executions import ExecutionResult, run_execution
from sandbox.settings import PROJECT_DIR, Settings
from sandbox.stack import LocalStack
from sandbox.trace import render_execution_text, trace_execution
from tests.dap import DapClient
from tests.processes import run_sandbox

pytestmark = pytest.mark.integration
SAGA = "OrderSagaStateMachine"
PAYMENT_HANDLER = PROJECT_DIR / "services" / "payment" / "handler.py"
STEP_TIMEOUT_SECONDS = 5  # ChargePayment's TimeoutSeconds in state_machines/order_saga.asl.json


@pytest.fixture(scope="module")
def run_cli(engine_settings: Settings) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {
        **os.environ,
        "SANDBOX_PORT": str(engine_settings.port),
        "SANDBOX_STATE_DIR": str(engine_settings.state_dir),
        "NO_COLOR": "1",
    }
    return lambda *args: run_sandbox(*args, env=env)


@pytest.fixture
def debug_route(stack: LocalStack) -> Any:
    route = DebugRoute(stack.engine.endpoint_url)
    yield route
    route.disarm()


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def history_of(stack: LocalStack, settings: Settings, arn: str) -> list[dict[str, Any]]:
    sfn = stack.client("stepfunctions", settings.region)
    return [
        e
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
        for e in page["events"]
    ]


def test_a_dap_client_stops_in_a_saga_step_holds_it_past_its_timeout_and_the_saga_completes(
    stack: LocalStack,
    engine_settings: Settings,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    saga_input: Callable[..., dict[str, Any]],
    debug_route: DebugRoute,
):
    # GIVEN ChargePayment armed for a debugger, through the CLI, on a free port
    port = find_free_port()
    armed = run_cli("debug", "ChargePayment", "--port", str(port), "--json")
    assert armed.returncode == 0, armed.stderr
    answer = json.loads(armed.stdout)
    assert (answer["host"], answer["port"]) == ("127.0.0.1", port)
    assert answer["pathMappings"] == [
        {
            "localRoot": str(PROJECT_DIR / "services"),
            "remoteRoot": answer["session"]["remoteRoots"][next(iter(answer["session"]["remoteRoots"]))],
        }
    ]
    # WHEN a saga runs and a DAP client attaches with those mappings and a breakpoint in the handler
    held_input = saga_input()
    with ThreadPoolExecutor(max_workers=4) as pool:
        held = pool.submit(run_execution, stack, engine_settings.region, engine_settings.stack_name, SAGA,
                           held_input, wait_seconds=180)  # fmt: skip
        client = DapClient("127.0.0.1", port)
        try:
            client.attach(
                answer["pathMappings"],
                {str(PAYMENT_HANDLER): [line_of(PAYMENT_HANDLER, "return handle_step")]},
            )
            stopped = client.event("stopped", seconds=60)
            stopped_at = time.monotonic()
            # THEN it stops in the step's own source file, with the step's event in hand
            frame = client.request("stackTrace", threadId=stopped["threadId"], levels=1)["stackFrames"][0]
            assert frame["source"]["path"] == str(PAYMENT_HANDLER)
            order_id = client.request("evaluate", expression="event['order']['orderId']", frameId=frame["id"],
                                      context="repl")["result"]  # fmt: skip
            assert order_id == repr(held_input["order"]["orderId"])
            # AND other sagas (their payment steps too) run to the end while this one is held
            others = [
                pool.submit(
                    run_execution,
                    stack,
                    engine_settings.region,
                    engine_settings.stack_name,
                    SAGA,
                    saga_input(),
                )
                for _ in range(3)
            ]
            assert all(other.result(timeout=120).is_succeeded for other in others)
            assert not held.done()
            # AND holding longer than the step's TimeoutSeconds times nothing out
            threading.Event().wait(max(0.0, STEP_TIMEOUT_SECONDS + 1.5 - (time.monotonic() - stopped_at)))
            client.request("continue", threadId=stopped["threadId"])
        finally:
            client.close()
        result: ExecutionResult = held.result(timeout=120)
    # THEN the order completes with no timeout and no retry
    assert result.is_succeeded, result
    events = history_of(stack, engine_settings, result.arn)
    charges = [
        e
        for e in events
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "ChargePayment"
    ]
    assert len(charges) == 1
    assert not [e for e in events if "Timed" in e["type"] or "States.Timeout" in json.dumps(e, default=str)]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"] == "TaskStateEntered"]
    scheduled = [e for e in events if e["type"] in ("LambdaFunctionScheduled", "TaskScheduled")]
    assert len(entered) == len(set(entered)) == len(scheduled)  # each step once, no retry
    # AND the engine recorded the hold, longer than the step's timeout
    (hold,) = debug_route.holds(result.name)
    assert hold["state"] == "ChargePayment" and hold["heldSeconds"] > STEP_TIMEOUT_SECONDS
    # AND the trace shows the step held in the debugger
    traced = trace_execution(stack, engine_settings.region, engine_settings.stack_name, result.arn)
    (charge,) = [state for state in traced.states if state.name == "ChargePayment"]
    assert charge.attempts[0].held_seconds == hold["heldSeconds"]
    assert "held in debugger" in render_execution_text(traced)
    # AND a one-shot session is disarmed by the invocation it debugged
    assert debug_route.sessions() == []


def test_an_armed_step_nobody_attaches_to_runs_after_its_deadline_and_two_ports_listen_at_once(
    stack: LocalStack,
    engine_settings: Settings,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    saga_input: Callable[..., dict[str, Any]],
    debug_route: DebugRoute,
):
    # GIVEN ReserveInventory armed with a 1 s wait for a client, and every ChargePayment invocation
    # armed without a wait, on another port
    first, second = find_free_port(), find_free_port()
    waited = run_cli("debug", "ReserveInventory", "--port", str(first), "--wait-seconds", "1")
    assert waited.returncode == 0 and "waits up to 1s" in waited.stdout, waited.stderr
    every = run_cli("debug", "ChargePayment", "--port", str(second), "--no-wait", "--all")
    assert every.returncode == 0, every.stderr
    assert len(debug_route.sessions()) == 2
    # WHEN three sagas run at once and nobody attaches
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: run_execution(stack, engine_settings.region, engine_settings.stack_name,
                                                        SAGA, saga_input(), wait_seconds=120), range(3)))  # fmt: skip
    # THEN each completes, undebugged
    assert all(result.is_succeeded for result in results), results
    holds = debug_route.holds()
    names = {result.name for result in results}
    assert sorted(h["state"] for h in holds if h["execution"] in names) == ["ChargePayment"] * 3 + [
        "ReserveInventory"
    ]
    # AND the one that waited says in its logs that no debugger came
    (reserve,) = [h for h in holds if h["state"] == "ReserveInventory" and h["execution"] in names]
    traced = trace_execution(stack, engine_settings.region, engine_settings.stack_name,
                             next(r.arn for r in results if r.name == reserve["execution"]))  # fmt: skip
    assert "no debugger attached within 1s" in render_execution_text(traced)
    # AND `--all` stays armed until --off
    listed = run_cli("debug", "--json")
    assert [s["state"] or s["function"] for s in json.loads(listed.stdout)["sessions"]] == ["ChargePayment"]
    off = run_cli("debug", "ChargePayment", "--off")
    assert off.returncode == 0 and "disarmed" in off.stdout, off.stderr
    assert debug_route.sessions() == []
