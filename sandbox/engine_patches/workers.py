"""Lambda workers: bounded pools, a frequent reaper, kept after handler errors, logs ended by a marker."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger("sandbox.engine_patches")

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
    released: Callable[[Any], None] = lambda _worker: None,
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
                _lease.worker = worker
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
            released(worker)
        finally:
            with freed:
                freed.notify_all()

    return acquire_waiting, release_notifying


# A worker an invalidation found leased: it is out of its pool and stops once its invocation ends.
RETIRED = "_sandbox_retired"
# The worker the current thread leased last: an invocation that invalidates its own function
# (its worker failed) stops that worker at once.
_lease = threading.local()


def draining_leased_workers(
    kill: Callable[[list[Any]], None], pool_lock: threading.Lock
) -> Callable[[list[Any]], None]:
    """The engine's ``kill_workers``: idle workers stop now, leased ones once their invocation ends.

    The engine killed every worker of a function whose code changed (hot reload, an update, an
    init failure of another worker), in-flight ones too, so an invocation running when the user
    saved a file failed with "Worker process died". On AWS an update lets running invocations
    finish on the old code; the next ones start on the new. ``released`` (see
    ``with_worker_queue``) stops a retired worker when its lease ends.
    """

    def kill_or_drain(workers: list[Any]) -> None:
        now = []
        with pool_lock:  # the engine guards in_use with its pool lock
            own = getattr(_lease, "worker", None)
            for worker in workers:
                if worker is not None and worker.in_use and worker is not own:
                    setattr(worker, RETIRED, True)
                else:
                    now.append(worker)
        kill(now)

    return kill_or_drain


def stop_if_retired(worker: Any, kill: Callable[[list[Any]], None]) -> None:
    """Stop a released worker that was retired while leased (off the releasing thread: it waits)."""
    if getattr(worker, RETIRED, False):
        threading.Thread(target=kill, args=([worker],), name="sandbox-retire-worker", daemon=True).start()


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
# It also names the exception's class, as AWS's errorType does (errors.with_error_types).
_KEPT_HANDLER_ERROR_ANSWER = (
    'json.dumps({"status": "ok", "handler_error": {"error": str(e), "trace": traceback.format_exc(),'
    ' "errorType": type(e).__name__}})'
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
        if isinstance(handler_error.get("errorType"), str):
            answer["errorType"] = handler_error["errorType"]
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
