"""Small, pinned patches of the embedded engine, applied by the sandbox's own engine launcher.

Run as ``python -m sandbox.engine_patches``: applies the patches, then starts MiniStack. Each
patch closes a measured gap between the engine and AWS that the saga depends on; any engine
version but the one they were written against is refused at start, as is one lacking a name
they replace or read (``REPLACED``, ``READ``).

The container image (docker/ministack/Dockerfile) runs this file as a top-level module, so it
imports nothing from the sandbox: the standard library and the engine only.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import os
import queue
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

PINNED_ENGINE_VERSION = "1.5.33"
logger = logging.getLogger("sandbox.engine_patches")

# Every name of the engine the patches replace, and every one they read: the engine's private
# internals, so a release may rename any of them. All are checked before anything is patched.
REPLACED = (
    "ministack.services.lambda_svc._execute_function_warm",
    "ministack.services.lambda_svc._execute_function",
    "ministack.services.lambda_svc._poll_dynamodb_streams",
    "ministack.services.lambda_svc.acquire_worker",
    "ministack.services.lambda_svc.release_worker",
    "ministack.services.lambda_svc._execute_function_docker",
    "ministack.services.lambda_svc._execute_function_proxy",
    "ministack.services.lambda_svc._execute_function_provided",
    "ministack.core.lambda_runtime._LOCAL_MAX_WORKERS",
    "ministack.core.lambda_runtime._LOCAL_WORKER_TTL",
    "ministack.core.lambda_runtime.acquire_worker",
    "ministack.core.lambda_runtime.release_worker",
    "ministack.core.lambda_runtime._PYTHON_WORKER_SCRIPT",
    "ministack.core.lambda_runtime.Worker._drain_stderr_bounded",
    "ministack.core.lambda_runtime.Worker.invoke",
    "ministack.core.lambda_runtime.ProvidedWorker.invoke",
    "ministack.services.stepfunctions._invoke_resource_with_timeout",
    "ministack.services.stepfunctions._run_execution",  # its code, in place
)
READ = (
    "ministack.services.lambda_svc._iter_all_esms",
    "ministack.services.lambda_svc._send_ddb_stream_failure_record",
    "ministack.core.lambda_runtime.ensure_spawned",
    "ministack.core.lambda_runtime.reap_idle_workers",
    "ministack.services.stepfunctions._invoke_resource",
    "ministack.services.stepfunctions._ExecutionError",
)


class EnginePatchError(RuntimeError):
    """The installed engine is not the one the patches were written for."""


# Warm Lambda workers per function; the launcher passes the sandbox's setting. 0: unbounded.
WORKERS_ENV = "SANDBOX_LAMBDA_WORKERS"
# The engine's own knob for how long a surplus worker may sit idle (its default is 300 s).
WORKER_TTL_ENV = "LAMBDA_WARM_TTL_SECONDS"
DEFAULT_WORKER_TTL_SECONDS = 5.0
# The engine's reaper runs every 30 s; a burst's surplus should be gone within seconds.
REAP_INTERVAL_SECONDS = 1.0
# How long an invocation queues for a free worker before it is throttled (a handler that
# invoked its own function synchronously would otherwise wait for itself forever).
WORKER_WAIT_SECONDS = 60.0
# How long a Task with TimeoutSeconds waits for its handler to start (queue + cold start)
# before its clock starts anyway.
HANDLER_START_WAIT_SECONDS = WORKER_WAIT_SECONDS + 30.0

# The last line of a Python traceback: "package.module.ErrorName: message" (or "ErrorName").
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<name>[A-Za-z_]\w*)(?::.*)?$")


def exception_name(log: str) -> str | None:
    """The class name of the exception of the last traceback in ``log``, if there is one.

    After "Traceback (most recent call last):" come indented frame lines, then the first line
    at column 0 names the exception (its message may continue on further lines).
    """
    lines = log.splitlines()
    starts = [
        index for index, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")
    ]
    if not starts:
        return None
    for line in lines[starts[-1] + 1 :]:
        if line and not line[0].isspace():
            match = _EXCEPTION_LINE.match(line.strip())
            return match.group("name") if match else None
    return None


def with_error_types(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Report a Python handler's exception class as ``errorType``, as AWS Lambda does.

    The engine reports every Python handler exception as ``Runtime.HandlerError``, so a Step
    Functions Retry or Catch on an error name (``TransientStepError``) never matches.
    """

    def run_with_error_type(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = run(*args, **kwargs)
        body = result.get("body")
        if result.get("error") and isinstance(body, dict) and body.get("errorType") == "Runtime.HandlerError":
            name = exception_name(str(result.get("log") or ""))
            if name:
                body["errorType"] = name
        return result

    return run_with_error_type


def _batch_item_failures(result: dict[str, Any]) -> list[Any]:
    body = result.get("body")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return []
    return list(body.get("batchItemFailures") or []) if isinstance(body, dict) else []


def _error_type(result: dict[str, Any]) -> str:
    body = result.get("body")
    return str(body.get("errorType") or "Unhandled") if isinstance(body, dict) else "Unhandled"


def _sequence(record: dict[str, Any]) -> int:
    return int((record.get("dynamodb") or {}).get("SequenceNumber") or 0)


def _first_failed(result: dict[str, Any], delivered: list[dict[str, Any]], reports_items: bool) -> int | None:
    """Index of the first record of the delivery that failed, -1 for all of it, None for none.

    As on AWS: a function error fails the whole delivery, and so does a reported identifier that
    names no record of it; of several reported records the lowest sequence number counts.
    """
    if result.get("error"):
        return -1
    failures = _batch_item_failures(result) if reports_items else []
    if not failures:
        return None
    positions = {str(_sequence(record)): index for index, record in enumerate(delivered)}
    identifiers = [str((failure or {}).get("itemIdentifier") or "") for failure in failures]
    if not all(identifier in positions for identifier in identifiers):
        return -1
    return min(positions[identifier] for identifier in identifiers)


class _ShardProgress:
    """Where a stream mapping stands inside the batch the engine keeps handing it."""

    def __init__(self) -> None:
        self.done_through = -1  # sequence number of the last record acknowledged
        self.span: int | None = None  # records to deliver from the head next time (None: all)
        self.attempts = 0  # failed deliveries of the head record


_stream_poll = threading.local()


def polling_streams(poll: Callable[[], bool]) -> Callable[[], bool]:
    """Mark the engine's DynamoDB stream poller, so only its invocations get stream semantics."""

    def poll_marked() -> bool:
        _stream_poll.active = True
        try:
            return poll()
        finally:
            _stream_poll.active = False

    return poll_marked


def with_stream_batch_semantics(
    execute: Callable[..., dict[str, Any]],
    find_mapping: Callable[[str, str], dict[str, Any] | None],
    send_to_on_failure: Callable[..., None],
) -> Callable[..., dict[str, Any]]:
    """AWS's failure semantics for DynamoDB stream mappings, down to the record.

    The engine hands a stream mapping the same batch until the function succeeds on it, retries
    it forever and ignores reported item failures. Wrapping the poller's invocations:
    - ReportBatchItemFailures: the records before the first failed one are checkpointed and never
      delivered again; delivery resumes at the failed record.
    - BisectBatchOnFunctionError: a failed record is then retried alone (a function error on
      several records first halves them), so only the record that keeps failing is counted,
      and the healthy records after it are delivered again (at least once, as on AWS).
    - MaximumRetryAttempts: once the failing record (or, without bisecting, the rest of the
      batch) has failed more than that many times, it goes to the OnFailure destination alone
      and delivery moves on.
    Only the poller's invocations are wrapped; a direct Invoke of the same function is not.
    """
    progress: dict[str, _ShardProgress] = {}

    def run(func: dict[str, Any], event: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        records = event.get("Records") if isinstance(event, dict) else None
        if not getattr(_stream_poll, "active", False) or not records:
            return execute(func, event, *args, **kwargs)
        config = func.get("config") or func
        mapping = find_mapping(str(config.get("FunctionName", "")), str(records[0].get("eventSourceARN", "")))
        if mapping is None:
            return execute(func, event, *args, **kwargs)
        reports_items = "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or [])
        bisects = bool(mapping.get("BisectBatchOnFunctionError"))
        max_retries = mapping.get("MaximumRetryAttempts")
        state = progress.setdefault(str(mapping.get("UUID")), _ShardProgress())
        pending = [record for record in records if _sequence(record) > state.done_through]
        result: dict[str, Any] = {"body": {"batchItemFailures": []}, "log": ""}
        while pending:
            delivered = pending[: state.span] if state.span else pending
            result = execute(func, {**event, "Records": delivered}, *args, **kwargs)
            failed = _first_failed(result, delivered, reports_items)
            if failed is None:
                state.done_through, state.span, state.attempts = _sequence(delivered[-1]), None, 0
                pending = pending[len(delivered) :]
                continue
            if failed > 0:  # checkpoint before the failed record; it heads the next delivery
                state.done_through, state.attempts = _sequence(delivered[failed - 1]), 0
                pending, delivered = pending[failed:], delivered[failed:]
            if bisects and len(delivered) > 1:
                if failed < 0:  # which record failed is unknown: halve, uncounted
                    state.span = (len(delivered) + 1) // 2
                    return _as_failure(result)
                state.span = 1  # the failed record, alone from now on
            state.attempts += 1
            if max_retries is None or int(max_retries) < 0 or state.attempts <= int(max_retries):
                return _as_failure(result)
            discarded = delivered[: state.span] if state.span else delivered
            send_to_on_failure(mapping, func, discarded, mapping.get("EventSourceArn", ""),
                               {**result, "function_error": _error_type(result)}, "RetryAttemptsExhausted")  # fmt: skip
            state.done_through, state.span, state.attempts = _sequence(discarded[-1]), None, 0
            pending = pending[len(discarded) :]
        return result

    return run


def _as_failure(result: dict[str, Any]) -> dict[str, Any]:
    """The engine's failed-invocation answer, so it keeps the batch and backs off before retrying."""
    if result.get("error"):
        return result
    failures = _batch_item_failures(result)
    return {
        "error": True,
        "body": {
            "errorType": "BatchItemFailures",
            "errorMessage": f"{len(failures)} record(s) reported as failed",
        },
        "log": result.get("log", ""),
    }


# ------------------------------------------------------------------ bounded worker pools


def lambda_workers(environ: Mapping[str, str]) -> int:
    """Warm workers allowed per function: ``SANDBOX_LAMBDA_WORKERS``, else one per CPU."""
    default = os.cpu_count() or 2
    raw = environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return default
    try:
        workers = int(raw)
    except ValueError:
        workers = -1
    if workers < 0:
        logger.warning("%s=%r is not a whole number >= 0: using %d", WORKERS_ENV, raw, default)
        return default
    return workers


def worker_ttl_seconds(environ: Mapping[str, str]) -> float:
    """Idle seconds before a surplus worker is reaped: the engine's knob if set, else 5."""
    raw = environ.get(WORKER_TTL_ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT_WORKER_TTL_SECONDS
    except ValueError:
        logger.warning("%s=%r is not a number: using %g", WORKER_TTL_ENV, raw, DEFAULT_WORKER_TTL_SECONDS)
        return DEFAULT_WORKER_TTL_SECONDS


WorkerLease = tuple[Any, str]


def with_worker_queue(
    acquire: Callable[..., WorkerLease],
    release: Callable[[Any], None],
    *,
    wait_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Callable[..., WorkerLease], Callable[[Any], None]]:
    """Make an invocation wait for a free worker when its function's pool is full.

    The engine's ``acquire_worker`` answers ``(None, "func_cap")`` at its per-function ceiling,
    which the invoke path turns into a throttle. Queueing instead is what a developer expects
    of a local engine under a burst: every order still runs, on at most N processes. The wait
    is bounded because a handler that synchronously invoked its own function would wait for
    the worker its caller holds; past the bound the engine's throttle answers, as before.
    """
    freed = threading.Condition()

    def acquire_waiting(func_name: str, *args: Any, **kwargs: Any) -> WorkerLease:
        deadline = clock() + wait_seconds
        with freed:
            while True:
                worker, reason = acquire(func_name, *args, **kwargs)
                remaining = deadline - clock()
                if worker is not None or reason != "func_cap" or remaining <= 0:
                    if worker is None and reason == "func_cap":
                        logger.warning(
                            "Lambda %s: no worker came free within %gs, so the invocation is throttled; "
                            "raise %s, or look for a handler that invokes its own function",
                            func_name, wait_seconds, WORKERS_ENV,
                        )  # fmt: skip
                    return worker, reason
                freed.wait(remaining)

    def release_notifying(worker: Any) -> None:
        if worker is not None:
            # The engine stamps a worker when it is leased; idle time counts from its release.
            worker.last_used = time.time()
        try:
            release(worker)
        finally:
            with freed:
                freed.notify_all()

    return acquire_waiting, release_notifying


def reap_periodically(reap: Callable[[], int], interval: float, stop: threading.Event) -> None:
    """Call ``reap`` every ``interval`` seconds until ``stop`` is set; a failing pass is logged."""
    while not stop.wait(interval):
        try:
            reap()
        except Exception:
            logger.exception("Lambda worker reaper pass failed")


def start_worker_reaper(reap: Callable[[], int], interval: float = REAP_INTERVAL_SECONDS) -> threading.Event:
    """Reap idle surplus workers every ``interval`` seconds; set the returned event to stop."""
    stop = threading.Event()
    threading.Thread(
        target=reap_periodically, args=(reap, interval, stop), name="sandbox-worker-reaper", daemon=True
    ).start()
    return stop


# ------------------------------------------------------------- handler errors keep the worker

# The line of the engine's Python worker script that reports a handler exception. The engine
# kills any worker whose answer has status "error"; reporting the exception as an "ok" answer
# that carries it keeps the worker, and with_handler_errors_kept turns it back into an error.
_HANDLER_ERROR_ANSWER = 'json.dumps({"status": "error", "error": str(e), "trace": traceback.format_exc()})'
_KEPT_HANDLER_ERROR_ANSWER = (
    'json.dumps({"status": "ok", "handler_error": {"error": str(e), "trace": traceback.format_exc()}})'
)


def keep_worker_on_handler_error(worker_script: str) -> str:
    """The engine's Python worker script, answering a handler exception without dying for it."""
    if worker_script.count(_HANDLER_ERROR_ANSWER) != 1:
        raise ValueError("the engine's worker script does not report handler errors as expected")
    return worker_script.replace(_HANDLER_ERROR_ANSWER, _KEPT_HANDLER_ERROR_ANSWER)


def with_handler_errors_kept(invoke: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Turn a kept worker's handler-error answer back into the error the engine reports.

    On AWS an execution environment survives a function error (it is reset only after a crash,
    a timeout or a process exit), so the next invocation is warm. The engine killed the worker
    after every handler exception, making each business error or injected fault cost the next
    call a cold start. Crashes, timeouts and dead workers are still reported, and replaced, by
    the engine itself.
    """

    def invoke_keeping_worker(worker: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = invoke(worker, *args, **kwargs)
        handler_error = result.get("handler_error") if result.get("status") == "ok" else None
        if not isinstance(handler_error, dict):
            return result
        answer = {key: value for key, value in result.items() if key not in ("handler_error", "result")}
        answer.update(status="error", error=str(handler_error.get("error", "")),
                      trace=str(handler_error.get("trace", "")))  # fmt: skip
        return answer

    return invoke_keeping_worker


# ----------------------------------------------- an invocation's logs end with a marker, not a wait

# Written by the patched Python worker to stderr just before each invocation's answer on stdout.
LOG_END_MARKER = "\x1esandbox:end-of-invocation-logs\x1e"
_ANSWER_LINES = (
    "            result = handler_fn(event, context)\n            _real_stdout.write(",
    "        except Exception as e:\n            _real_stdout.write(",
)
_MARK_LOG_END = "sys.stderr.write(" + repr(LOG_END_MARKER + "\n") + "); sys.stderr.flush(); "


def mark_end_of_logs(worker_script: str) -> str:
    """The engine's Python worker script, ending each invocation's stderr with ``LOG_END_MARKER``."""
    for line in _ANSWER_LINES:
        if worker_script.count(line) != 1:
            raise ValueError("the engine's worker script does not answer invocations as expected")
        marked = line.replace("_real_stdout.write(", _MARK_LOG_END + "_real_stdout.write(")
        worker_script = worker_script.replace(line, marked)
    return worker_script


def draining_to_log_end_marker(
    drain: Callable[..., str], log_queue_of: Callable[[Any], Any], is_marked: Callable[[Any], bool]
) -> Callable[..., str]:
    """Collect an invocation's log lines up to its end marker, instead of waiting for quiet.

    The engine guessed where an invocation's logs end: after each answer it polled its stderr
    queue every millisecond until 5 ms passed without a line, or 50 ms when the handler logged
    nothing, holding the worker (and the engine's CPU) all the while. A GET that logs nothing
    paid 50 ms; every invocation paid 5-10 ms. A marked worker says where its logs end, so the
    drain blocks on the queue until the marker (bounded by the engine's own hard cap). Workers
    that do not mark (other runtimes, a worker that died) keep the engine's drain.
    """

    def drain_to_marker(worker: Any, *args: Any, hard_cap: float = 0.250, **kwargs: Any) -> str:
        if not is_marked(worker):
            return drain(worker, *args, hard_cap=hard_cap, **kwargs)
        lines: list[str] = []
        deadline = time.monotonic() + hard_cap
        log_queue = log_queue_of(worker)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = log_queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line == LOG_END_MARKER:
                break
            lines.append(line)
        return "\n".join(lines)

    return drain_to_marker


# ------------------------------------------------ Task TimeoutSeconds from the handler's start

# Set by a Step Functions Task with TimeoutSeconds for the Lambda invocation it makes; the
# invoke path sets the event when the handler starts running on a worker.
HANDLER_STARTED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "sandbox_handler_started", default=None
)


def signal_handler_start() -> None:
    """Tell a waiting Task's timeout that its handler starts now (a no-op elsewhere)."""
    started = HANDLER_STARTED.get()
    if started is not None:
        started.set()


def with_start_signal(
    invoke: Callable[..., dict[str, Any]], spawn: Callable[[Any], None]
) -> Callable[..., dict[str, Any]]:
    """Signal the handler's start once the worker is up: after its cold start, if it had one.

    The worker is leased to this invocation alone, so spawning it here (``spawn`` is the
    engine's ``ensure_spawned``) is exactly what the engine's invoke would do first.
    """

    def invoke_signalling(worker: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if HANDLER_STARTED.get() is None:
            return invoke(worker, *args, **kwargs)
        process = getattr(worker, "_proc", None)
        is_cold = process is None or process.poll() is not None
        if is_cold:
            spawn(worker)
        signal_handler_start()
        result = invoke(worker, *args, **kwargs)
        if is_cold and isinstance(result, dict):
            result["cold_start"] = True
        return result

    return invoke_signalling


def signalling_start(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Signal the handler's start when ``execute`` begins (executors without a worker pool)."""

    def execute_signalling(*args: Any, **kwargs: Any) -> Any:
        signal_handler_start()
        return execute(*args, **kwargs)

    return execute_signalling


def is_lambda_resource(resource: str) -> bool:
    """Whether a Task resource invokes a Lambda function (optimized integration or bare ARN)."""
    return "states:::lambda:invoke" in resource or ":function:" in resource


def timing_from_handler_start(
    invoke_resource: Callable[[str, Any], Any],
    timeout_error: Callable[[str, str], Exception],
    *,
    start_wait: float = HANDLER_START_WAIT_SECONDS,
) -> Callable[[str, Any, float], Any]:
    """A Task's TimeoutSeconds clock that starts when its Lambda handler starts running.

    The engine started the clock when the state began, so time spent waiting for a free worker
    and in the worker's cold start counted against the function: under a burst on two cores,
    5-second steps timed out without ever having run long. A Lambda Task now waits (at most
    ``start_wait``) for the handler to start, or for the invocation to end without starting,
    then gives it TimeoutSeconds. Other resources are timed as the engine timed them. As in the
    engine, a timed-out task keeps running; the state ignores its result.
    """

    def invoke_with_timeout(resource: str, input_data: Any, timeout: float) -> Any:
        context = contextvars.copy_context()  # the account and region scope (engine issue #639)
        started = threading.Event() if is_lambda_resource(str(resource)) else None
        if started is not None:
            context.run(HANDLER_STARTED.set, started)
        pool = ThreadPoolExecutor(max_workers=1)
        future: Future[Any] = pool.submit(context.run, invoke_resource, resource, input_data)
        pool.shutdown(wait=False)
        if started is not None:
            future.add_done_callback(lambda _: started.set())
            started.wait(start_wait)
        try:
            return future.result(timeout=timeout)
        except FutureTimeoutError:
            raise timeout_error("States.Timeout", f"Task timed out after {timeout} seconds") from None

    return invoke_with_timeout


# ------------------------------------------------------- no fixed delay before an execution


def replace_constant(function: types.FunctionType, old: float, new: float) -> None:
    """Replace the one float constant ``old`` in ``function``'s own code with ``new``, in place."""
    code = function.__code__
    hits = [index for index, const in enumerate(code.co_consts) if type(const) is float and const == old]
    if len(hits) != 1:
        raise ValueError(f"{function.__qualname__} has {len(hits)} constants {old!r}, expected one")
    consts = list(code.co_consts)
    consts[hits[0]] = new
    function.__code__ = code.replace(co_consts=tuple(consts))


def resolve(name: str) -> Any:
    """The object a dotted name (``package.module.Class.attribute``) names; AttributeError if none."""
    parts = name.split(".")
    found: Any = importlib.import_module(parts[0])
    path = parts[0]
    for part in parts[1:]:
        path = f"{path}.{part}"
        if not hasattr(found, part) and isinstance(found, types.ModuleType):
            with contextlib.suppress(ModuleNotFoundError):  # a submodule not imported yet
                importlib.import_module(path)
        if not hasattr(found, part):
            raise AttributeError(f"{name}: {path} does not exist")
        found = getattr(found, part)
    return found


def missing_engine_names(names: tuple[str, ...] = REPLACED + READ) -> list[str]:
    """Which of ``names`` the installed engine lacks."""
    missing = []
    for name in names:
        try:
            resolve(name)
        except (AttributeError, ImportError):
            missing.append(name)
    return missing


def check_engine(installed: str) -> None:
    """Refuse an engine other than the pinned version, or one lacking a name the patches need."""
    if installed != PINNED_ENGINE_VERSION:
        raise EnginePatchError(
            f"MiniStack {installed} is installed but the sandbox is pinned to {PINNED_ENGINE_VERSION}; "
            f"install the pinned version (pip install ministack=={PINNED_ENGINE_VERSION})"
        )
    missing = missing_engine_names()
    if missing:
        raise EnginePatchError(f"MiniStack {installed} lacks what the sandbox patches: {', '.join(missing)}")


def apply_patches() -> str:
    """Patch the installed engine and return its version; EnginePatchError when it is not the pinned one.

    An engine run unpatched would answer differently from the one the saga was built and tested
    against (stream retries, error names, timeouts), so it does not start at all.
    """
    from importlib.metadata import version  # here, not at import: the CLI reads this module's pin

    installed = version("ministack")
    check_engine(installed)
    from ministack.services import lambda_svc

    lambda_svc._execute_function_warm = with_error_types(lambda_svc._execute_function_warm)

    def find_mapping(function_name: str, source_arn: str) -> dict[str, Any] | None:
        for _account, _region, mapping in lambda_svc._iter_all_esms():
            if mapping.get("FunctionName") == function_name and mapping.get("EventSourceArn") == source_arn:
                return dict(mapping)
        return None

    lambda_svc._execute_function = with_stream_batch_semantics(
        lambda_svc._execute_function, find_mapping, lambda_svc._send_ddb_stream_failure_record
    )
    lambda_svc._poll_dynamodb_streams = polling_streams(lambda_svc._poll_dynamodb_streams)
    _patch_worker_pools(os.environ)
    _patch_task_timeouts()
    return installed


def _patch_worker_pools(environ: Mapping[str, str]) -> None:
    from ministack.core import lambda_runtime
    from ministack.services import lambda_svc

    # The engine's own per-function ceiling (0, unbounded, in the engine), read at every lease.
    lambda_runtime._LOCAL_MAX_WORKERS = lambda_workers(environ)
    lambda_runtime._LOCAL_WORKER_TTL = worker_ttl_seconds(environ)
    acquire, release = with_worker_queue(
        lambda_runtime.acquire_worker, lambda_runtime.release_worker, wait_seconds=WORKER_WAIT_SECONDS
    )
    # lambda_svc imported both names from lambda_runtime: patch both namespaces.
    for module in (lambda_runtime, lambda_svc):
        module.acquire_worker = acquire
        module.release_worker = release
    lambda_runtime._PYTHON_WORKER_SCRIPT = mark_end_of_logs(
        keep_worker_on_handler_error(lambda_runtime._PYTHON_WORKER_SCRIPT)
    )
    worker = lambda_runtime.Worker
    worker._drain_stderr_bounded = draining_to_log_end_marker(
        worker._drain_stderr_bounded,
        log_queue_of=lambda w: w._stderr_queue,
        # A live Python worker runs the marked script; a dead one (its _proc cleared) or another
        # runtime's worker is drained the engine's way.
        is_marked=lambda w: w._proc is not None and str(w.config.get("Runtime", "")).startswith("python"),
    )
    worker.invoke = with_handler_errors_kept(with_start_signal(worker.invoke, lambda_runtime.ensure_spawned))
    provided = lambda_runtime.ProvidedWorker
    provided.invoke = signalling_start(provided.invoke)
    for name in ("_execute_function_docker", "_execute_function_proxy", "_execute_function_provided"):
        setattr(lambda_svc, name, signalling_start(getattr(lambda_svc, name)))


def _patch_task_timeouts() -> None:
    from ministack.services import stepfunctions

    stepfunctions._invoke_resource_with_timeout = timing_from_handler_start(
        stepfunctions._invoke_resource, stepfunctions._ExecutionError
    )
    # `_run_execution` slept a fixed 150 ms before every execution (65% of a warm order). The
    # execution record and its ExecutionStarted event are stored before its thread starts, so
    # DescribeExecution and GetExecutionHistory are complete without the delay.
    replace_constant(stepfunctions._run_execution, 0.15, 0.0)


def _warm_imports() -> None:
    # The first CreateChangeSet applies the SAM transform; importing the translator while the
    # server starts takes that cost off the first deploy.
    import samtranslator.translator.transform  # noqa: F401


def main() -> None:
    try:
        apply_patches()
    except EnginePatchError as error:
        # One line on stderr and exit code 1: `sandbox up` shows the engine log's last lines.
        sys.exit(f"sandbox engine refused to start: {error}")
    from ministack.core import lambda_runtime

    start_worker_reaper(lambda_runtime.reap_idle_workers)
    threading.Thread(target=_warm_imports, name="warm-imports", daemon=True).start()
    from ministack.app import main as engine_main

    engine_main()


if __name__ == "__main__":
    main()
