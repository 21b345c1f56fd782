"""The engine version the patches were written against, and every engine name they touch.

Any other version is refused at start, as is one lacking a name the patches replace or read.
"""

from __future__ import annotations

import contextlib
import importlib
import types
from typing import Any

PINNED_ENGINE_VERSION = "1.5.33"


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
    "ministack.core.lambda_runtime._NODEJS_WORKER_SCRIPT",
    "ministack.core.lambda_runtime._detect_runtime_binary",
    "ministack.core.lambda_runtime.Worker._drain_stderr_bounded",
    "ministack.core.lambda_runtime.Worker.invoke",
    "ministack.core.lambda_runtime.Worker._spawn",
    "ministack.core.lambda_runtime.zipfile",
    "ministack.core.lambda_runtime.subprocess",
    "ministack.core.lambda_runtime.tempfile",
    "ministack.core.lambda_runtime.kill_workers",
    "ministack.core.lambda_runtime.ProvidedWorker.invoke",
    "ministack.services.stepfunctions._invoke_resource_with_timeout",
    "ministack.services.stepfunctions._run_execution",  # its code, in place
    "ministack.services.stepfunctions._invoke_sns_publish",
    "ministack.services.lambda_svc._execute_function_dispatch",
    "ministack.services.stepfunctions._execute_task",
    "ministack.services.stepfunctions._find_matching_retrier",  # the saga clock: MaxDelaySeconds
    "ministack.app.app",
    "ministack.services.stepfunctions._invoke_resource",  # also read: the Task timeouts wrap the patched one
    # redrive.py: RedriveExecution, and the redrive fields of DescribeExecution and ListExecutions
    "ministack.services.stepfunctions.handle_request",
    "ministack.services.stepfunctions._describe_execution",
    "ministack.services.stepfunctions._list_executions",
    "ministack.services.stepfunctions._execution_sort_key",
    "ministack.services.stepfunctions._start_execution",
    "ministack.services.stepfunctions._apply_state_assign",
    "ministack.services.stepfunctions.reset",
)
READ = (
    # the saga clock sets these only when a time scale is set (clock.py)
    "ministack.services.stepfunctions._SFN_WAIT_SCALE",
    "ministack.services.lambda_svc._ESM_BACKOFF_SECONDS",
    "ministack.app._resolve_port",
    "ministack.services.lambda_svc._iter_all_esms",
    "ministack.services.lambda_svc._send_ddb_stream_failure_record",
    # the stream lanes (streams.py) read what the engine's DynamoDB stream poller read
    "ministack.services.lambda_svc._request_account_id",
    "ministack.services.lambda_svc._request_region",
    "ministack.services.lambda_svc.parse_arn",
    "ministack.services.lambda_svc.ArnParseError",
    "ministack.services.lambda_svc.get_account_id",
    "ministack.services.lambda_svc.get_region",
    "ministack.services.lambda_svc._dynamodb_stream_table_from_arn_spec",
    "ministack.services.lambda_svc._get_func_record_for_qualifier",
    "ministack.services.lambda_svc._dynamodb_stream_positions",
    "ministack.services.lambda_svc._dynamodb_stream_positions_lock",
    "ministack.services.lambda_svc._apply_filter_criteria",
    "ministack.services.lambda_svc.spawn_background",
    "ministack.services.lambda_svc._esm_wake",
    "ministack.services.lambda_svc.logger",
    "ministack.services.dynamodb._tables",
    "ministack.services.dynamodb._stream_records",
    "ministack.services.dynamodb.stream_start_position",
    "ministack.services.dynamodb.stream_end_position",
    "ministack.services.dynamodb.stream_records_since",
    "ministack.core.lambda_runtime.ensure_spawned",
    "ministack.services.lambda_svc._functions",  # its records, for the workers route
    "ministack.core.lambda_runtime._workers",
    "ministack.core.lambda_runtime._lock",
    "ministack.core.lambda_runtime.reap_idle_workers",
    "ministack.services.stepfunctions._ExecutionError",
    "ministack.services.stepfunctions._SERVICE_DISPATCH",  # its sns:publish entry is replaced in place
    # redrive.py runs a redriven execution with the engine's own state handlers and records
    "ministack.services.stepfunctions._executions",
    "ministack.services.stepfunctions._state_machines",
    "ministack.services.stepfunctions._add_event",
    "ministack.services.stepfunctions._fail_execution",
    "ministack.services.stepfunctions._emit_execution_status_event",
    "ministack.services.stepfunctions._finalize_response",
    "ministack.services.stepfunctions._execute_pass",
    "ministack.services.stepfunctions._execute_choice",
    "ministack.services.stepfunctions._execute_wait",
    "ministack.services.stepfunctions._execute_parallel",
    "ministack.services.stepfunctions._execute_map",
    "ministack.services.stepfunctions._apply_input_path",
    "ministack.services.stepfunctions._apply_output_path",
    "ministack.services.stepfunctions._fail_state_error",
    "ministack.services.stepfunctions._next_or_end",
    "ministack.services.stepfunctions.error_response_json",
    "ministack.services.stepfunctions.json_response",
    "ministack.services.stepfunctions.now_iso",
    "ministack.services.stepfunctions.logger",
)


class EnginePatchError(RuntimeError):
    """The installed engine is not the one the patches were written for."""


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
