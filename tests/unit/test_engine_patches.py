"""The engine patches: Lambda errorType, bounded worker pools, Task timeouts (stream lanes: test_stream_parallelism)."""

from __future__ import annotations

import contextvars
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from sandbox import engine_patches
from sandbox.engine_patches import (
    DEFAULT_WORKER_TTL_SECONDS,
    HANDLER_STARTED,
    WORKER_TTL_ENV,
    WORKERS_ENV,
    exception_name,
    is_lambda_resource,
    keep_worker_on_handler_error,
    lambda_workers,
    reap_periodically,
    replace_constant,
    signal_handler_start,
    signalling_start,
    timing_from_handler_start,
    with_error_types,
    with_handler_errors_kept,
    with_start_signal,
    with_worker_queue,
    worker_ttl_seconds,
)

TRACEBACK = """\
START RequestId: 1 Version: $LATEST
Traceback (most recent call last):
  File "/var/task/payment/handler.py", line 23, in lambda_handler
    return handle_step(event, context, service="payment", actions=ACTIONS, logger=logger)
  File "/var/task/payment/charges.py", line 31, in charge_payment
    raise TransientStepError(
shared.errors.TransientStepError: payment provider timed out
"""


@pytest.mark.parametrize(
    ("last_line", "name"),
    [
        ("shared.errors.TransientStepError: payment provider timed out", "TransientStepError"),
        ("shared.errors.PaymentDeclinedError: card declined", "PaymentDeclinedError"),
        ("KeyError: 'orderId'", "KeyError"),
        (
            "botocore.errorfactory.ConditionalCheckFailedException: An error occurred: x: y",
            "ConditionalCheckFailedException",
        ),
        ("StopIteration", "StopIteration"),
    ],
)
def test_exception_name_is_the_class_of_the_last_traceback_line(last_line: str, name: str) -> None:
    log = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\n' + last_line + "\n\n"
    assert exception_name(log) == name


def test_exception_name_of_a_real_looking_log() -> None:
    assert exception_name(TRACEBACK) == "TransientStepError"


@pytest.mark.parametrize(
    "log",
    [
        "",
        "shared.errors.TransientStepError: boom",  # no traceback above it
        "Traceback (most recent call last):",  # nothing after it
        "just some output\nmore output",
        'Traceback (most recent call last):\n  File "x.py", line 1\nnot an exception line: ok?',
    ],
)
def test_exception_name_is_none_without_a_traceback_ending(log: str) -> None:
    assert exception_name(log) is None


def fake_run(result: dict[str, Any]) -> Any:
    calls: list[tuple[tuple, dict]] = []

    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append((args, kwargs))
        return result

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_handler_error_is_renamed_to_the_exception_class() -> None:
    # GIVEN the engine reported every Python exception as Runtime.HandlerError
    result = {
        "error": True,
        "log": TRACEBACK,
        "body": {"errorType": "Runtime.HandlerError", "errorMessage": "payment provider timed out"},
    }
    run = fake_run(result)
    # WHEN run through the patch (arguments passed through untouched)
    patched = with_error_types(run)
    out = patched("fn", {"a": 1}, timeout=3)
    # THEN Step Functions sees the class name its Retry lists
    assert out["body"]["errorType"] == "TransientStepError"
    assert out["body"]["errorMessage"] == "payment provider timed out"
    assert run.calls == [(("fn", {"a": 1}), {"timeout": 3})]


@pytest.mark.parametrize(
    "result",
    [
        {"error": False, "log": TRACEBACK, "body": {"errorType": "Runtime.HandlerError"}},
        {"error": True, "log": TRACEBACK, "body": {"errorType": "Runtime.ImportModuleError"}},
        {"error": True, "log": "no traceback here", "body": {"errorType": "Runtime.HandlerError"}},
        {"error": True, "log": None, "body": {"errorType": "Runtime.HandlerError"}},
        {"error": True, "log": TRACEBACK, "body": "a string body"},
        {"error": True, "log": TRACEBACK},
    ],
)
def test_other_results_are_left_alone(result: dict[str, Any]) -> None:
    before = repr(result)
    assert with_error_types(fake_run(result))() is result
    assert repr(result) == before


def test_a_throttle_is_reported_as_aws_names_it_so_the_sagas_retry_applies() -> None:
    # GIVEN the engine's answer when no worker came free within the queueing bound
    throttle = {"throttle": True, "error": True, "log": "",
                "body": {"__type": "TooManyRequestsException", "message": "Rate Exceeded"}}  # fmt: skip
    # THEN Step Functions sees Lambda.TooManyRequestsException (the saga's Retry lists it), the rest kept
    out = with_error_types(fake_run(throttle))()
    assert out["body"] == {"__type": "TooManyRequestsException", "message": "Rate Exceeded",
                           "errorType": "Lambda.TooManyRequestsException"}  # fmt: skip
    assert out["throttle"] is True


def test_exception_name_reads_the_exception_line_not_a_message_continuation() -> None:
    # GIVEN a traceback whose exception message spans two lines, the last a single word
    log = 'Traceback (most recent call last):\n  File "h.py", line 1, in f\n    raise ValueError("bad\\ninput")\nValueError: bad\ninput'
    # THEN the exception class is reported, not the message's last word
    from sandbox.engine_patches import exception_name

    assert exception_name(log) == "ValueError"


# ------------------------------------------------------------------ bounded worker pools


@pytest.mark.parametrize(
    ("environ", "workers"),
    [({}, os.cpu_count() or 2), ({WORKERS_ENV: "3"}, 3), ({WORKERS_ENV: " 0 "}, 0),
     ({WORKERS_ENV: "many"}, os.cpu_count() or 2), ({WORKERS_ENV: "-1"}, os.cpu_count() or 2)],
)  # fmt: skip
def test_lambda_workers_come_from_the_setting_else_one_per_cpu(environ: dict, workers: int) -> None:
    assert lambda_workers(environ) == workers


@pytest.mark.parametrize(
    ("environ", "ttl"),
    [({}, DEFAULT_WORKER_TTL_SECONDS), ({WORKER_TTL_ENV: "30"}, 30.0), ({WORKER_TTL_ENV: "soon"}, 5.0)],
)
def test_worker_ttl_is_the_engines_knob_else_five_seconds(environ: dict, ttl: float) -> None:
    assert worker_ttl_seconds(environ) == ttl


class FakeWorker:
    last_used = 0.0


class FakePool:
    """The engine's acquire_worker/release_worker over a fixed set of workers."""

    def __init__(self, size: int) -> None:
        self.free = [FakeWorker() for _ in range(size)]
        self.lock = threading.Lock()

    def acquire(self, func_name: str, *args: Any, **kwargs: Any) -> tuple[Any, str]:
        with self.lock:
            return (self.free.pop(), "reused") if self.free else (None, "func_cap")

    def release(self, worker: Any) -> None:
        if worker is not None:
            with self.lock:
                self.free.append(worker)


def test_an_invocation_waits_for_a_worker_of_a_full_pool_instead_of_being_throttled() -> None:
    # GIVEN a pool of one worker, leased
    pool = FakePool(1)
    acquire, release = with_worker_queue(pool.acquire, pool.release, wait_seconds=10)
    held, _ = acquire("fn")
    # WHEN a second invocation asks while the first still runs
    second: list[tuple[Any, str]] = []
    waiter = threading.Thread(target=lambda: second.append(acquire("fn")))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and second == []  # it queues
    release(held)
    waiter.join(5)
    # THEN it gets the released worker, stamped idle from its release
    assert second == [(held, "reused")]
    assert held.last_used > 0


def test_a_worker_dropped_from_the_pool_also_wakes_a_waiter() -> None:
    # GIVEN a full pool whose only worker dies and is dropped (the engine releases None then)
    pool = FakePool(1)
    acquire, release = with_worker_queue(pool.acquire, pool.release, wait_seconds=10)
    acquire("fn")
    got: list[tuple[Any, str]] = []
    waiter = threading.Thread(target=lambda: got.append(acquire("fn")))
    waiter.start()
    waiter.join(0.1)
    pool.free.append(FakeWorker())  # the engine would spawn a replacement on the next lease
    release(None)
    waiter.join(5)
    assert got and got[0][0] is not None


def test_the_wait_is_bounded_and_ends_in_the_engines_throttle() -> None:
    acquire, _ = with_worker_queue(FakePool(0).acquire, FakePool(0).release, wait_seconds=0.05)
    started = time.monotonic()
    assert acquire("fn") == (None, "func_cap")
    assert time.monotonic() - started < 2


def test_other_lease_answers_are_returned_at_once() -> None:
    answers = iter([(None, "something-else")])
    acquire, _ = with_worker_queue(lambda *a, **k: next(answers), lambda w: None, wait_seconds=10)
    assert acquire("fn", {"config": 1}, b"zip", qualifier="$LATEST") == (None, "something-else")


def test_the_reaper_runs_every_interval_until_stopped_and_survives_a_failing_pass() -> None:
    stop = threading.Event()
    passes: list[int] = []

    def reap() -> int:
        passes.append(1)
        if len(passes) == 2:
            raise RuntimeError("a pass fails")
        if len(passes) == 3:
            stop.set()
        return 0

    reap_periodically(reap, 0.001, stop)
    assert len(passes) == 3


# ------------------------------------------------------------- handler errors keep the worker


def test_the_worker_script_reports_a_handler_error_as_an_answer_that_keeps_the_worker() -> None:
    script = 'try:\n    r = h()\nexcept Exception as e:\n    out.write(json.dumps({"status": "error", "error": str(e), "trace": traceback.format_exc()}) + "\\n")\n'
    patched = keep_worker_on_handler_error(script)
    assert '"status": "ok", "handler_error": {"error": str(e)' in patched
    with pytest.raises(ValueError, match="worker script"):
        keep_worker_on_handler_error("print('a different engine')")


def test_a_kept_handler_error_is_reported_as_the_engines_error() -> None:
    answer = {"status": "ok", "handler_error": {"error": "boom", "trace": "Traceback...\nValueError: boom"},
              "cold_start": False, "log": "line"}  # fmt: skip
    invoke = with_handler_errors_kept(lambda worker, event, request_id: answer)
    assert invoke(object(), {}, "r1") == {
        "status": "error", "error": "boom", "trace": "Traceback...\nValueError: boom", "cold_start": False,
        "log": "line",
    }  # fmt: skip


@pytest.mark.parametrize(
    "answer",
    [{"status": "ok", "result": {"handler_error": "a handler's own key"}},
     {"status": "error", "error": "Worker process died"}, {"status": "ok", "result": None}],
)  # fmt: skip
def test_other_answers_pass_through(answer: dict) -> None:
    assert with_handler_errors_kept(lambda worker: answer)(object()) is answer


# ------------------------------------------------ Task TimeoutSeconds from the handler's start


class FakeProcess:
    def __init__(self, exit_code: int | None) -> None:
        self.exit_code = exit_code

    def poll(self) -> int | None:
        return self.exit_code


class SpawnableWorker:
    def __init__(self, process: FakeProcess | None) -> None:
        self._proc = process


def test_the_start_is_signalled_after_a_cold_workers_spawn() -> None:
    # GIVEN a Task waiting for its handler to start, and a worker with no process yet
    events: list[str] = []
    started = threading.Event()
    worker = SpawnableWorker(None)

    def spawn(w: Any) -> None:
        events.append("spawn")

    def invoke(w: Any, event: Any, request_id: str) -> dict:
        events.append(f"invoke started={started.is_set()}")
        return {"status": "ok"}

    # WHEN it is invoked
    token = HANDLER_STARTED.set(started)
    try:
        result = with_start_signal(invoke, spawn)(worker, {}, "r1")
    finally:
        HANDLER_STARTED.reset(token)
    # THEN it was spawned first, the start signalled after, and the cold start reported
    assert events == ["spawn", "invoke started=True"]
    assert result == {"status": "ok", "cold_start": True}


@pytest.mark.parametrize("is_waited_for", [True, False])
def test_a_warm_worker_is_not_spawned_again(is_waited_for: bool) -> None:
    spawned: list[Any] = []
    started = threading.Event()
    token = HANDLER_STARTED.set(started if is_waited_for else None)
    try:
        result = with_start_signal(lambda w: {"status": "ok"}, spawned.append)(
            SpawnableWorker(FakeProcess(None))
        )
    finally:
        HANDLER_STARTED.reset(token)
    assert spawned == [] and result == {"status": "ok"}
    assert started.is_set() is is_waited_for


def test_executors_without_a_pool_signal_when_they_begin() -> None:
    started = threading.Event()
    seen: list[bool] = []
    execute = signalling_start(lambda *args: seen.append(started.is_set()))
    token = HANDLER_STARTED.set(started)
    try:
        execute("func", {})
    finally:
        HANDLER_STARTED.reset(token)
    assert seen == [True]
    execute("func", {})  # nobody waiting: nothing to signal


@pytest.mark.parametrize(
    ("resource", "is_lambda"),
    [("arn:aws:states:::lambda:invoke", True), ("arn:aws:lambda:us-east-1:000000000000:function:f", True),
     ("arn:aws:states:::dynamodb:putItem", False), ("arn:aws:states:::sqs:sendMessage", False)],
)  # fmt: skip
def test_lambda_resources_are_recognised(resource: str, is_lambda: bool) -> None:
    assert is_lambda_resource(resource) is is_lambda


class TaskTimedOut(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error


def lambda_task(queued: float, runs: float) -> Any:
    """A Lambda invocation that waits ``queued`` for a worker, then runs its handler for ``runs``."""

    def invoke(resource: str, input_data: Any) -> Any:
        time.sleep(queued)  # the queue and the cold start, simulated
        signal_handler_start()
        time.sleep(runs)
        return {"ok": input_data}

    return invoke


def test_time_waiting_for_a_worker_does_not_count_against_timeout_seconds() -> None:
    # GIVEN a handler that waits 0.6 s for a worker, then runs for 0.01 s, under a 0.3 s timeout
    invoke = timing_from_handler_start(lambda_task(queued=0.6, runs=0.01), TaskTimedOut)
    # THEN the Task succeeds: only the handler's own run is timed
    assert invoke("arn:aws:states:::lambda:invoke", 1, 0.3) == {"ok": 1}


def test_a_handler_running_past_timeout_seconds_times_out() -> None:
    invoke = timing_from_handler_start(lambda_task(queued=0.0, runs=1.0), TaskTimedOut)
    with pytest.raises(TaskTimedOut) as raised:
        invoke("arn:aws:states:::lambda:invoke", 1, 0.1)
    assert raised.value.error == "States.Timeout"


def test_other_resources_are_timed_from_the_states_start() -> None:
    invoke = timing_from_handler_start(lambda_task(queued=0.4, runs=0.0), TaskTimedOut)
    with pytest.raises(TaskTimedOut):
        invoke("arn:aws:states:::dynamodb:putItem", 1, 0.1)


def test_an_invocation_that_fails_before_its_handler_starts_fails_at_once() -> None:
    # GIVEN a Lambda invocation that fails before any handler runs (say, the function is gone)
    def invoke_missing(resource: str, input_data: Any) -> Any:
        raise LookupError("Function not found")

    invoke = timing_from_handler_start(invoke_missing, TaskTimedOut, start_wait=30)
    started = time.monotonic()
    with pytest.raises(LookupError):
        invoke("arn:aws:states:::lambda:invoke", 1, 5)
    # THEN its error is raised without waiting out the start bound
    assert time.monotonic() - started < 5


def test_the_callers_context_reaches_the_invocation() -> None:
    scope: contextvars.ContextVar[str] = contextvars.ContextVar("scope", default="default")
    token = scope.set("account-1")
    try:
        invoke = timing_from_handler_start(lambda resource, data: scope.get(), TaskTimedOut)
        assert invoke("arn:aws:states:::lambda:invoke", None, 5) == "account-1"
    finally:
        scope.reset(token)


# ------------------------------------------------------- no fixed delay before an execution


def test_replace_constant_changes_the_one_constant_in_place() -> None:
    slept: list[float] = []

    def run_execution(sleep: Callable[[float], None]) -> str:
        sleep(0.15)
        return "ran"

    replace_constant(run_execution, 0.15, 0.0)  # type: ignore[arg-type]
    assert run_execution(slept.append) == "ran"
    assert slept == [0.0]


def test_replace_constant_refuses_code_it_was_not_written_for() -> None:
    def run_execution(sleep: Callable[[float], None]) -> None:
        sleep(0.25)

    with pytest.raises(ValueError, match=r"has 0 constants 0\.15, expected one"):
        replace_constant(run_execution, 0.15, 0.0)  # type: ignore[arg-type]


# ------------------------------------------------------------- on the pinned engine itself

# Runs in its own interpreter: the patches change the engine's modules for the whole process.
ENGINE_PROBE = """
import io, json, os, zipfile
os.environ["SANDBOX_LAMBDA_WORKERS"] = "1"
from sandbox.engine_patches import apply_patches
assert apply_patches()
from ministack.core import lambda_runtime
from ministack.services import lambda_svc, stepfunctions
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as archive:
    archive.writestr("app.py", (
        "import os\\n"
        "def handler(event, context):\\n"
        "    if event.get('fail'):\\n"
        "        raise ValueError('boom')\\n"
        "    if event.get('crash'):\\n"
        "        os._exit(3)\\n"
        "    return os.getpid()\\n"
    ))
config = {"FunctionName": "f", "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
          "Runtime": "python3.11", "Handler": "app.handler", "Timeout": 5}
worker, _ = lambda_svc.acquire_worker("f", config, code.getvalue())
try:
    answers = [worker.invoke(event, str(n)) for n, event in enumerate(
        [{}, {"fail": True}, {}, {"crash": True}, {}])]
finally:
    lambda_svc.release_worker(worker)
    lambda_runtime.reset()
print(json.dumps({
    "answers": [[a["status"], a.get("result"), a.get("error")] for a in answers],
    "max_workers": lambda_runtime._LOCAL_MAX_WORKERS,
    "ttl": lambda_runtime._LOCAL_WORKER_TTL,
    "start_delay": [c for c in stepfunctions._run_execution.__code__.co_consts if type(c) is float],
    "task_timeout": stepfunctions._invoke_resource_with_timeout.__qualname__,
}))
"""


def test_on_the_pinned_engine_a_handler_error_keeps_its_worker_and_a_crash_replaces_it() -> None:
    # GIVEN the patched engine and a real Python worker (a subprocess; no network)
    probe = subprocess.run(
        [sys.executable, "-c", ENGINE_PROBE], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != WORKER_TTL_ENV},
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    # WHEN it answers: ok, a handler error, ok, a crash, ok
    (ok, _, _), failed, after, crashed, replaced = report["answers"]
    # THEN the handler error is reported and the same process answers next
    assert ok == "ok"
    assert failed == ["error", None, "boom"]
    assert after[:2] == ["ok", report["answers"][0][1]]
    # AND a process that died is still replaced
    assert crashed[0] == "error" and replaced[0] == "ok" and replaced[1] != after[1]
    # AND the pool cap, the idle TTL, the start delay and the Task timing are patched
    assert report["max_workers"] == 1 and report["ttl"] == DEFAULT_WORKER_TTL_SECONDS
    assert report["start_delay"] == [0.0]
    assert report["task_timeout"].startswith("timing_from_handler_start")


# ------------------------------------------------------------------- the launcher's setting


def test_the_launcher_passes_the_worker_setting_into_the_engines_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sandbox.engine import engine_environment
    from sandbox.settings import Settings

    monkeypatch.delenv("SANDBOX_LAMBDA_WORKERS", raising=False)
    assert Settings.load().lambda_workers == (os.cpu_count() or 2)
    monkeypatch.setenv("SANDBOX_LAMBDA_WORKERS", "3")
    settings = Settings.load()
    assert settings.lambda_workers == 3
    environment = engine_environment(settings.port, settings.lambda_workers)
    assert environment[WORKERS_ENV] == "3"
    assert lambda_workers(environment) == 3
    # The sandbox's other SANDBOX_* variables stay out of the engine.
    assert [key for key in environment if key.startswith("SANDBOX_")] == [WORKERS_ENV]


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_a_worker_setting_that_is_not_a_whole_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from sandbox.errors import UsageError
    from sandbox.settings import Settings

    monkeypatch.setenv("SANDBOX_LAMBDA_WORKERS", value)
    with pytest.raises(UsageError, match="SANDBOX_LAMBDA_WORKERS"):
        Settings.load()


# ---------------------------------------------------------------- an invocation's logs end with a marker


def test_the_worker_script_marks_the_end_of_each_invocations_logs_before_answering() -> None:
    # GIVEN the pinned engine's Python worker script, as the launcher patches it
    from ministack.core import lambda_runtime

    script = engine_patches.mark_end_of_logs(
        engine_patches.keep_worker_on_handler_error(lambda_runtime._PYTHON_WORKER_SCRIPT)
    )
    compile(script, "worker", "exec")
    # THEN both answers (a result, a handler error) are preceded by the marker on stderr
    marked = [line for line in script.splitlines() if "end-of-invocation-logs" in line]
    assert len(marked) == 2
    assert all(line.index("sys.stderr.write(") < line.index("_real_stdout.write(") for line in marked)
    # AND the ready line of a cold start is not marked (it is no invocation)
    assert '"status": "ready"' not in "".join(marked)


def test_an_unexpected_worker_script_is_refused_rather_than_half_patched() -> None:
    with pytest.raises(ValueError, match="does not answer invocations"):
        engine_patches.mark_end_of_logs("print('hello')")


class LogWorker:
    def __init__(self, lines: list[str], is_marked: bool = True):
        self.log_queue: queue.Queue[str] = queue.Queue()
        for line in lines:
            self.log_queue.put(line)
        self.is_marked = is_marked


def drain_of(fallback: list[str] | None = None) -> Any:
    def engine_drain(worker: Any, *args: Any, **kwargs: Any) -> str:
        (fallback if fallback is not None else []).append("engine")
        return "engine drain"

    return engine_patches.draining_to_log_end_marker(
        engine_drain, log_queue_of=lambda w: w.log_queue, is_marked=lambda w: w.is_marked
    )


def test_the_drain_returns_at_the_marker_without_waiting() -> None:
    # GIVEN an invocation's two log lines, its marker, and the next invocation's first line
    marker = engine_patches.LOG_END_MARKER
    worker = LogWorker(["START", "done", marker, "next invocation"])
    started = time.monotonic()
    # WHEN draining THEN exactly this invocation's lines come back, at once
    assert drain_of()(worker, hard_cap=5) == "START\ndone"
    assert time.monotonic() - started < 0.5
    assert worker.log_queue.get_nowait() == "next invocation"


def test_the_drain_waits_for_a_marker_still_in_the_pipe() -> None:
    # GIVEN the marker arrives a little after the answer (the stderr reader thread is behind)
    worker = LogWorker(["logged"])
    marker = engine_patches.LOG_END_MARKER
    threading.Timer(0.05, worker.log_queue.put, args=(marker,)).start()
    # WHEN draining THEN it blocks until the marker rather than returning early
    assert drain_of()(worker, hard_cap=5) == "logged"


def test_the_drain_is_bounded_when_no_marker_comes() -> None:
    worker = LogWorker(["orphan line"])
    started = time.monotonic()
    assert drain_of()(worker, hard_cap=0.1) == "orphan line"
    assert time.monotonic() - started < 1


def test_workers_that_do_not_mark_are_drained_the_engines_way() -> None:
    calls: list[str] = []
    assert drain_of(calls)(LogWorker(["x"], is_marked=False)) == "engine drain"
    assert calls == ["engine"]


# ------------------------------------------------------------------ the engine's HTTP server


def test_the_engine_is_served_by_its_own_server_unless_uvicorn_is_asked_for() -> None:
    from sandbox.engine_patches.server import KEEP_ALIVE_SECONDS, chosen_server, uvicorn_config

    # GIVEN no choice, the engine's own (its p95 was better under a burst); asked for, uvicorn;
    # anything else refused in one line
    assert chosen_server({}) == "hypercorn"
    assert chosen_server({"SANDBOX_ENGINE_SERVER": "uvicorn"}) == "uvicorn"
    with pytest.raises(SystemExit, match="SANDBOX_ENGINE_SERVER='nginx': choose hypercorn or uvicorn"):
        chosen_server({"SANDBOX_ENGINE_SERVER": "nginx"})
    # AND uvicorn keeps what the engine relies on: its lifespan, keep-alive, its own Date header
    config = uvicorn_config(object(), "127.0.0.1", 4566, "INFO")
    assert (config.lifespan, config.timeout_keep_alive, config.server_header, config.date_header) == (
        "on",
        KEEP_ALIVE_SECONDS,
        False,
        False,
    )
    assert (config.loop, config.http) == ("uvloop", "httptools")
