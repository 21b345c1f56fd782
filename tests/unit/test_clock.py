"""The saga clock's arithmetic, its wrappers around the engine, and its route (no engine runs)."""

from __future__ import annotations

import json
import math
import threading
import types

import pytest

from sandbox.engine import clock as sandbox_clock
from sandbox.engine.compose import compose_environment
from sandbox.engine.embedded import engine_environment
from sandbox.engine_patches.clock import (
    Clock,
    capping_retry_delays,
    handle_request,
    parse_time_scale,
    reading_invocation_deadline,
    scaling_function_timeouts,
)
from sandbox.engine_patches.timeouts import timing_from_handler_start
from sandbox.errors import UsageError
from sandbox.settings import time_scale_of


class TimeoutError_(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error, self.cause = error, cause


def test_a_time_scale_is_a_positive_number_or_max() -> None:
    # GIVEN the forms a user writes WHEN parsed THEN numbers, max and unset are read, the rest refused
    assert parse_time_scale("10") == 10.0 and parse_time_scale("0.5") == 0.5
    assert parse_time_scale("MAX") == math.inf
    assert parse_time_scale(None) is None and parse_time_scale("") is None
    for bad in ("0", "-2", "fast", "nan", True):
        with pytest.raises(ValueError):
            parse_time_scale(bad)
    with pytest.raises(UsageError, match="--time-scale"):
        time_scale_of("zero", "--time-scale")


def test_waits_shrink_by_the_scale_and_budgets_keep_a_floor() -> None:
    # GIVEN a clock ten times faster
    fast = Clock(10.0)
    # WHEN waits and budgets are scaled THEN waits shrink tenfold, budgets not below the floor
    assert fast.scaled(30) == 3.0 and fast.wait_scale == pytest.approx(0.1)
    assert fast.budget(5) == 0.5  # the demo's TimeoutSeconds at 10x: at the floor exactly
    assert fast.budget(2) == 0.5  # 0.2 s would cut real work short
    assert fast.budget(0.3) == 0.3  # a budget is never lengthened by the floor
    assert fast.budget(1e6) == 1e5  # a debugger's hold stays huge
    # AND max skips waits and leaves budgets at the floor; no scale changes nothing
    assert Clock(math.inf).scaled(3600) == 0.0 and Clock(math.inf).budget(5) == 0.5
    assert Clock().scaled(7) == 7 and Clock().budget(7) == 7 and Clock().wait_scale is None


def test_setting_the_clock_sets_the_engine_wait_knobs_and_unsetting_puts_them_back() -> None:
    # GIVEN the engine's two wait knobs at their start values
    engine = {
        "stepfunctions": types.SimpleNamespace(_SFN_WAIT_SCALE=0.01),
        "lambda_svc": types.SimpleNamespace(_ESM_BACKOFF_SECONDS=1.0),
    }
    saga = Clock()
    # WHEN the clock runs at 4x, then at the default again
    saga.set(4.0, engine)
    at_four = (engine["stepfunctions"]._SFN_WAIT_SCALE, engine["lambda_svc"]._ESM_BACKOFF_SECONDS)
    saga.set(None, engine)
    # THEN the knobs followed it, and came back
    assert at_four == (0.25, 0.25)
    assert (
        engine["stepfunctions"]._SFN_WAIT_SCALE == 0.01 and engine["lambda_svc"]._ESM_BACKOFF_SECONDS == 1.0
    )


def test_a_task_timeout_runs_on_the_budget_and_reports_the_written_seconds() -> None:
    # GIVEN a Task timer on a clock whose budgets are recorded, and a task that never answers
    given: list[float] = []

    def budget(seconds: float) -> float:
        given.append(seconds)
        return 0.05

    never = threading.Event()
    timed = timing_from_handler_start(lambda resource, data: never.wait(1.0), TimeoutError_, budget=budget)
    # WHEN a 30 s Task times out
    with pytest.raises(TimeoutError_) as raised:
        timed("arn:aws:states:::dynamodb:putItem", {}, 30)
    # THEN the timer asked the clock for the budget of 30 s, and the history reads 30 as written
    assert given == [30]
    assert raised.value.cause == "Task timed out after 30 seconds"
    # AND at 10x the clock's budget of a 30 s Task is 3 s
    assert Clock(10.0).budget(30) == 3.0


def test_a_function_runs_under_its_scaled_timeout_on_a_config_copy() -> None:
    # GIVEN a worker of a function with a 10 s Timeout
    worker = types.SimpleNamespace(config={"FunctionName": "f", "Timeout": 10})
    original = worker.config
    seen: list[float] = []
    invoke = scaling_function_timeouts(lambda w, *a: seen.append(w.config["Timeout"]) or {}, Clock(5.0))
    # WHEN it is invoked at 5x THEN the invocation saw 2 s, and the worker keeps its own config
    invoke(worker, {}, "request-id")
    assert seen == [2.0] and worker.config is original and original["Timeout"] == 10


def test_retries_honour_max_delay_seconds() -> None:
    # GIVEN a retrier whose third delay (1 * 2**3 = 8 s) is above its MaxDelaySeconds of 5
    retrier = {"ErrorEquals": ["E"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxDelaySeconds": 5}
    find = capping_retry_delays(lambda retriers, error, counts: (retriers[0], 0))
    # WHEN the engine asks for it with three retries counted
    found, index = find([retrier], "E", {0: 3})
    # THEN it computes 5 s from the answer (interval * rate ** count), and 2 s earlier on
    assert index == 0 and found["IntervalSeconds"] * found["BackoffRate"] ** 3 == 5.0
    early, _ = find([retrier], "E", {0: 1})
    assert early["IntervalSeconds"] * early["BackoffRate"] ** 1 == 2.0


def test_the_worker_script_takes_its_deadline_from_the_invocation() -> None:
    # GIVEN the pinned engine's Python worker script
    from ministack.core import lambda_runtime

    # WHEN rewritten THEN the handler's remaining time follows the invocation's timeout_ms
    script = reading_invocation_deadline(lambda_runtime._PYTHON_WORKER_SCRIPT)
    assert "_ms_ctx['timeout_ms']" in script
    compile(script, "_worker.py", "exec")
    with pytest.raises(ValueError):
        reading_invocation_deadline(script)  # once only: the line it rewrites is gone


def test_the_clock_route_reads_and_sets_the_scale() -> None:
    # GIVEN a clock at its default
    saga = Clock()
    # WHEN the route sets max, then a wrong value THEN the first holds and the second is refused
    status, answer = handle_request(saga, None, "POST", json.dumps({"timeScale": "max"}).encode())
    assert (status, answer["timeScale"], answer["waitScale"]) == (200, "max", 0.0)
    status, answer = handle_request(saga, None, "POST", b'{"timeScale": -1}')
    assert status == 400 and "above 0" in answer["message"]
    assert handle_request(saga, None, "GET", b"")[1]["timeScale"] == "max"
    # AND the CLI's side reads the same answer
    read = sandbox_clock.EngineClock.from_json(saga.to_json())
    assert read.time_scale == math.inf and read.saga_seconds(2.0) is None
    assert sandbox_clock.EngineClock.from_json(Clock(10.0).to_json()).saga_seconds(2.0) == 20.0


def test_the_launchers_pass_the_scale_to_the_engine() -> None:
    # GIVEN a scale of 10 and of max WHEN the embedded and compose environments are built
    # THEN both carry it; without one, neither does
    assert engine_environment(4566, time_scale=10.0)["SANDBOX_TIME_SCALE"] == "10.0"
    assert compose_environment(4566, "img", base={}, time_scale=math.inf)["SANDBOX_TIME_SCALE"] == "max"
    assert "SANDBOX_TIME_SCALE" not in engine_environment(4566)
    assert "SANDBOX_TIME_SCALE" not in compose_environment(4566, "img", base={})
