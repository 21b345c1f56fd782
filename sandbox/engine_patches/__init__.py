"""Small, pinned patches of the embedded engine, applied by the sandbox's own engine launcher.

Run as ``python -m sandbox.engine_patches``: applies the patches, then starts MiniStack. Each
patch closes a measured gap between the engine and AWS that the saga depends on; any engine
version but the one they were written against is refused at start, as is one lacking a name
they replace or read (``REPLACED``, ``READ``).

One module per patch: ``errors`` (errorType as AWS's runtimes name it: exception classes, init
failures, Node errors, throttles), ``streams`` (DynamoDB stream mappings in lanes, AWS's failure semantics), ``workers``
(bounded worker pools, the reaper, workers kept after handler errors, the log-end marker),
``timeouts`` (Task timeouts from the handler's start, no delay before an execution),
``runtimes`` (workers started by the sandbox's per-runtime launchers: the function sees what it
would see on AWS), ``unpacking`` (Python workers of the same code share one unpacked copy and its
bytecode), ``integrations`` (an ``sns:publish`` Task keeps its MessageAttributes; a Lambda Task
carries its invocation's request id, as AWS's response does), ``faults`` (fault rules at the
Lambda invoke boundary, and the ``/_sandbox/faults`` route that sets them), ``zygotes`` (Python
workers forked from a parent that imported what their runtime provides and what their
dependencies' workers import; ``zygote_server`` is that parent), ``prewarm`` (the
``/_sandbox/workers`` route: live workers, one worker of each function started ahead),
``debugger`` (``sandbox debug``: an armed invocation runs under debugpy or Node's inspector on a
worker of its own, its Task's timeout stopped while held), ``redrive`` (RedriveExecution: a
failed execution restarts at the state it did not complete), ``clock`` (the saga clock: ``sandbox
up --time-scale N`` scales waits, retries, timeouts and remaining time together), ``routes``
(the sandbox's JSON routes beside the AWS APIs); ``pin`` holds the version and the engine names.
This module applies them.

The container image (docker/ministack/Dockerfile) runs this package as a top-level package
(``python3 -m engine_patches``), so it imports nothing from the sandbox: the standard library,
the engine, and its own modules by relative imports.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping

from .calls import COUNTS, CallCounts, counting_invocations, with_call_counts
from .clock import CLOCK, Clock, patch_clock
from .debugger import (
    DebugBook,
    DebugRequestError,
    DebugSession,
    debug_tempfile,
    debugging_python_workers,
    with_debug_route,
    with_debugger,
)
from .errors import (
    INIT_ERROR_PREFIX,
    exception_name,
    init_error_report,
    recording_error_reports,
    reporting_node_errors,
    reporting_python_init_errors,
    with_error_types,
)
from .faults import (
    BOOK,
    FaultBook,
    FaultRule,
    FaultRuleError,
    with_fault_route,
    with_faults,
    with_task_calls,
    with_worker_faults,
)
from .integrations import (
    LAMBDA_INVOKE,
    SNS_PUBLISH,
    LambdaInvocation,
    apply_request_ids,
    cause_with_request_id,
    lambda_invoke_output,
    query_message_attributes,
    recording_invocations,
    with_message_attributes,
    with_request_ids,
)
from .pin import (
    PINNED_ENGINE_VERSION,
    READ,
    REPLACED,
    EnginePatchError,
    check_engine,
    missing_engine_names,
    resolve,
)
from .prewarm import Prewarmer, engine_prewarmer, warmable, with_prewarm_route
from .redrive import apply_redrive
from .routes import with_json_route
from .runtimes import LAUNCH_FILE, RUNTIMES_ENV, runtime_launcher, with_runtime_launchers
from .server import SERVER_ENV, chosen_server, serve_engine, uvicorn_config
from .streams import polling_dynamodb_streams
from .timeouts import (
    HANDLER_START_WAIT_SECONDS,
    HANDLER_STARTED,
    is_lambda_resource,
    replace_constant,
    signal_handler_start,
    signalling_start,
    timing_from_handler_start,
    with_start_signal,
)
from .unpacking import (
    SHARED_FOLDER,
    SharingZipFile,
    sharing_python_code,
    sharing_zipfile_module,
    unpack_shared,
)
from .workers import (
    DEFAULT_WORKER_TTL_SECONDS,
    LOG_END_MARKER,
    REAP_INTERVAL_SECONDS,
    WORKER_TTL_ENV,
    WORKER_WAIT_SECONDS,
    WORKERS_ENV,
    WorkerLease,
    draining_leased_workers,
    draining_to_log_end_marker,
    keep_worker_on_handler_error,
    lambda_workers,
    mark_end_of_logs,
    reap_periodically,
    start_worker_reaper,
    stop_if_retired,
    with_handler_errors_kept,
    with_worker_queue,
    worker_ttl_seconds,
)
from .zygotes import (
    FORKED_WORKERS_ENV,
    ForkedWorker,
    WorkerParent,
    WorkerParentError,
    WorkerParents,
    forked_workers_enabled,
    forking_subprocess,
    is_python_worker,
)

__all__ = [
    "BOOK",
    "CLOCK",
    "COUNTS",
    "DEFAULT_WORKER_TTL_SECONDS",
    "FORKED_WORKERS_ENV",
    "HANDLER_STARTED",
    "HANDLER_START_WAIT_SECONDS",
    "INIT_ERROR_PREFIX",
    "LAMBDA_INVOKE",
    "LAUNCH_FILE",
    "LOG_END_MARKER",
    "PINNED_ENGINE_VERSION",
    "READ",
    "REAP_INTERVAL_SECONDS",
    "REPLACED",
    "RUNTIMES_ENV",
    "SERVER_ENV",
    "SHARED_FOLDER",
    "SNS_PUBLISH",
    "WORKERS_ENV",
    "WORKER_PARENTS",
    "WORKER_TTL_ENV",
    "WORKER_WAIT_SECONDS",
    "CallCounts",
    "Clock",
    "DebugBook",
    "DebugRequestError",
    "DebugSession",
    "EnginePatchError",
    "FaultBook",
    "FaultRule",
    "FaultRuleError",
    "ForkedWorker",
    "LambdaInvocation",
    "Prewarmer",
    "SharingZipFile",
    "WorkerLease",
    "WorkerParent",
    "WorkerParentError",
    "WorkerParents",
    "apply_patches",
    "apply_redrive",
    "apply_request_ids",
    "cause_with_request_id",
    "check_engine",
    "chosen_server",
    "counting_invocations",
    "debug_tempfile",
    "debugging_python_workers",
    "draining_leased_workers",
    "draining_to_log_end_marker",
    "engine_prewarmer",
    "exception_name",
    "forked_workers_enabled",
    "forking_subprocess",
    "init_error_report",
    "is_lambda_resource",
    "is_python_worker",
    "keep_worker_on_handler_error",
    "lambda_invoke_output",
    "lambda_workers",
    "main",
    "mark_end_of_logs",
    "missing_engine_names",
    "patch_clock",
    "polling_dynamodb_streams",
    "query_message_attributes",
    "reap_periodically",
    "recording_error_reports",
    "recording_invocations",
    "replace_constant",
    "reporting_node_errors",
    "reporting_python_init_errors",
    "resolve",
    "runtime_launcher",
    "serve_engine",
    "sharing_python_code",
    "sharing_zipfile_module",
    "signal_handler_start",
    "signalling_start",
    "start_worker_reaper",
    "stop_if_retired",
    "timing_from_handler_start",
    "unpack_shared",
    "uvicorn_config",
    "warmable",
    "with_call_counts",
    "with_debug_route",
    "with_debugger",
    "with_error_types",
    "with_fault_route",
    "with_faults",
    "with_handler_errors_kept",
    "with_json_route",
    "with_message_attributes",
    "with_prewarm_route",
    "with_request_ids",
    "with_runtime_launchers",
    "with_start_signal",
    "with_task_calls",
    "with_worker_faults",
    "with_worker_queue",
    "worker_ttl_seconds",
]


# The engine's worker parents (one per Python runtime binary), started at their first worker.
WORKER_PARENTS = WorkerParents()


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

    # Faults inside the stream lanes (they deliver through _execute_function as it is then): a
    # faulted delivery is retried, bisected and sent on failure as a failed handler would be.
    # Invocations counted where they reach a function (a faulted one that never ran is not).
    lambda_svc._execute_function = with_faults(counting_invocations(lambda_svc._execute_function))
    lambda_svc._poll_dynamodb_streams = polling_dynamodb_streams(lambda_svc)
    _patch_worker_pools(os.environ)
    apply_request_ids()  # before the Task timeouts wrap the engine's Task dispatch
    _patch_task_timeouts()
    _patch_runtimes()
    _patch_fault_route()
    apply_redrive()
    # Last: the saga clock wraps the Task timeouts, worker invocations and app the others installed.
    patch_clock(os.environ)
    return installed


def _patch_fault_route() -> None:
    import ministack.app
    from ministack.services import stepfunctions

    # Looked up by name for every Task state, so the invoke path knows the state and execution.
    stepfunctions._execute_task = with_task_calls(stepfunctions._execute_task)
    # The engine's main() serves the module's `app`, looked up when it starts.
    ministack.app.app = with_debug_route(
        with_prewarm_route(with_call_counts(with_fault_route(ministack.app.app)), engine_prewarmer())
    )


def _patch_worker_pools(environ: Mapping[str, str]) -> None:
    from ministack.core import lambda_runtime
    from ministack.services import lambda_svc

    # The engine's own per-function ceiling (0, unbounded, in the engine), read at every lease.
    lambda_runtime._LOCAL_MAX_WORKERS = lambda_workers(environ)
    lambda_runtime._LOCAL_WORKER_TTL = worker_ttl_seconds(environ)
    kill = lambda_runtime.kill_workers
    acquire, release = with_worker_queue(
        lambda_runtime.acquire_worker,
        lambda_runtime.release_worker,
        wait_seconds=WORKER_WAIT_SECONDS,
        released=lambda worker: stop_if_retired(worker, kill),
    )
    # An update of a function's code (hot reload) lets its in-flight invocations finish.
    lambda_runtime.kill_workers = draining_leased_workers(kill, lambda_runtime._lock)
    # lambda_svc imported both names from lambda_runtime: patch both namespaces.
    for module in (lambda_runtime, lambda_svc):
        module.acquire_worker = acquire
        module.release_worker = release
    lambda_runtime._PYTHON_WORKER_SCRIPT = debugging_python_workers(
        mark_end_of_logs(
            keep_worker_on_handler_error(reporting_python_init_errors(lambda_runtime._PYTHON_WORKER_SCRIPT))
        )
    )
    lambda_runtime._NODEJS_WORKER_SCRIPT = reporting_node_errors(lambda_runtime._NODEJS_WORKER_SCRIPT)
    worker = lambda_runtime.Worker
    worker._drain_stderr_bounded = draining_to_log_end_marker(
        worker._drain_stderr_bounded,
        log_queue_of=lambda w: w._stderr_queue,
        # A live Python worker runs the marked script; a dead one (its _proc cleared) or another
        # runtime's worker is drained the engine's way.
        is_marked=lambda w: w._proc is not None and str(w.config.get("Runtime", "")).startswith("python"),
    )
    # An armed invocation (`sandbox debug`) runs on a debug worker of its own, in a fixed folder.
    worker.invoke = with_debugger(
        with_worker_faults(
            recording_error_reports(
                with_handler_errors_kept(with_start_signal(worker.invoke, lambda_runtime.ensure_spawned))
            )
        ),
        kill=lambda workers: lambda_runtime.kill_workers(workers),
    )
    lambda_runtime.tempfile = debug_tempfile()
    provided = lambda_runtime.ProvidedWorker
    provided.invoke = signalling_start(provided.invoke)
    for name in ("_execute_function_docker", "_execute_function_proxy", "_execute_function_provided"):
        setattr(lambda_svc, name, signalling_start(getattr(lambda_svc, name)))


def _patch_task_timeouts() -> None:
    from ministack.services import stepfunctions

    stepfunctions._invoke_resource_with_timeout = timing_from_handler_start(
        stepfunctions._invoke_resource, stepfunctions._ExecutionError, budget=CLOCK.budget
    )
    # `_run_execution` slept a fixed 150 ms before every execution (65% of a warm order). The
    # execution record and its ExecutionStarted event are stored before its thread starts, so
    # DescribeExecution and GetExecutionHistory are complete without the delay.
    replace_constant(stepfunctions._run_execution, 0.15, 0.0)


def _patch_runtimes() -> None:
    from ministack.core import lambda_runtime
    from ministack.services import stepfunctions

    lambda_runtime._detect_runtime_binary = with_runtime_launchers(lambda_runtime._detect_runtime_binary)
    if forked_workers_enabled(os.environ):
        # The engine's one Popen of a Python worker forks it from a pre-imported parent instead.
        lambda_runtime.subprocess = forking_subprocess(WORKER_PARENTS)
    lambda_runtime.zipfile = sharing_zipfile_module()
    lambda_runtime.Worker._spawn = sharing_python_code(lambda_runtime.Worker._spawn)
    # The dispatch table holds the function itself, looked up by resource prefix.
    publish = with_message_attributes(stepfunctions._invoke_sns_publish)
    stepfunctions._invoke_sns_publish = publish
    stepfunctions._SERVICE_DISPATCH[SNS_PUBLISH] = publish


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
    serve_engine()
