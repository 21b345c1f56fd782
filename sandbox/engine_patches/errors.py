"""Lambda errors named as AWS names them: handler exceptions, init failures, throttles."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

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


# What the last worker invocation on this thread reported: the engine's invoke path turns a
# worker's answer into a body of its own, keeping only the message, so the report goes beside it.
_reports = threading.local()


def _take_report() -> dict[str, Any] | None:
    report: dict[str, Any] | None = getattr(_reports, "last", None)
    _reports.last = None
    return report


# What Step Functions calls a throttled Lambda invocation on AWS (a Retry names it).
THROTTLE_ERROR = "Lambda.TooManyRequestsException"


def with_error_types(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Report a Python handler's exception class as ``errorType``, as AWS Lambda does.

    The engine reports every Python handler exception as ``Runtime.HandlerError``, so a Step
    Functions Retry or Catch on an error name (``TransientStepError``) never matches. A throttle
    (no worker free within the queueing bound) carries no ``errorType`` at all, so Step Functions
    saw ``Lambda.Unknown`` where AWS reports ``Lambda.TooManyRequestsException``, and the saga's
    Retry on throttles never applied: under a long backlog, orders failed instead of retrying.
    A patched worker's own report (``recording_error_reports``) names init failures and Node
    errors as AWS's runtimes do; the traceback in the log is the fallback for Python handlers.
    """

    def run_with_error_type(*args: Any, **kwargs: Any) -> dict[str, Any]:
        _reports.last = None
        result = run(*args, **kwargs)
        report = _take_report()
        body = result.get("body")
        if result.get("throttle") and isinstance(body, dict):
            body.setdefault("errorType", THROTTLE_ERROR)
        if result.get("error") and isinstance(body, dict) and report is not None:
            # What the worker itself reported (recording_error_reports): the runtime's own names.
            body["errorType"] = report["errorType"]
            if isinstance(report.get("errorMessage"), str):
                body["errorMessage"] = report["errorMessage"]
            if "stackTrace" in report:
                body["stackTrace"] = report["stackTrace"]
            if not result.get("log"):
                # An init failure leaves no log; AWS logs the error as the function's log line.
                result["log"] = f"[ERROR] {report['errorType']}: {body.get('errorMessage', '')}"
        elif (
            result.get("error") and isinstance(body, dict) and body.get("errorType") == "Runtime.HandlerError"
        ):
            name = exception_name(str(result.get("log") or ""))
            if name:
                body["errorType"] = name
        return result

    return run_with_error_type


# --------------------------------------------- init failures and Node errors named as AWS names them

# How a patched worker reports an init failure: the engine turns the worker's answer into
# RuntimeError(f"Worker init failed: {error}"), so the report rides the error text as JSON.
INIT_ERROR_PREFIX = "sandbox-init-error:"

# Defined ahead of the engine's Python worker script: the module import and handler lookup of
# AWS's Python runtime (awslambdaric's bootstrap), with its error types and messages.
_PYTHON_INIT = r"""
class _SandboxInitFault(Exception):
    def __init__(self, error_type, message, trace=None):
        Exception.__init__(self, message)
        self.error_type = error_type
        self.trace = trace or []


def _sandbox_load_handler(module_name, handler_name):
    import importlib, sys
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise _SandboxInitFault(
            "Runtime.BuiltInModuleConflict", "Cannot use built-in module %s as a handler module" % module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise _SandboxInitFault(
            "Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, error))
    except SyntaxError as error:
        raise _SandboxInitFault(
            "Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (module_name, error),
            ['  File "%s" Line %s\n    %s' % (error.filename, error.lineno, error.text)])
    try:
        return module, getattr(module, handler_name)
    except AttributeError:
        raise _SandboxInitFault(
            "Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (handler_name, module_name))


def _sandbox_init_error(error):
    import json, traceback
    if isinstance(error, _SandboxInitFault):
        report = {"errorType": error.error_type, "errorMessage": str(error), "stackTrace": error.trace}
    else:
        frames = [frame for frame in traceback.extract_tb(error.__traceback__)
                  if frame.filename != __file__ and not frame.filename.startswith("<frozen")]
        report = {"errorType": type(error).__name__, "errorMessage": str(error),
                  "stackTrace": traceback.format_list(frames)}
    return "__PREFIX__" + json.dumps(report)
""".replace("__PREFIX__", INIT_ERROR_PREFIX)

_PYTHON_IMPORT = (
    "        mod = importlib.import_module(module_name)\n        handler_fn = getattr(mod, handler_name)\n"
)
_PYTHON_INIT_ANSWER = 'json.dumps({"status": "error", "error": str(e)})'


def reporting_python_init_errors(worker_script: str) -> str:
    """The engine's Python worker script, failing its init as AWS's Python runtime does.

    The engine reports a module that cannot be imported, or a missing handler function, as a
    ``RuntimeError`` whose message is the bare exception text; AWS answers
    ``Runtime.ImportModuleError`` ("Unable to import module 'app': No module named 'x'") and
    ``Runtime.HandlerNotFound``.
    """
    for line in (_PYTHON_IMPORT, _PYTHON_INIT_ANSWER):
        if worker_script.count(line) != 1:
            raise ValueError("the engine's Python worker script does not load handlers as expected")
    worker_script = worker_script.replace(
        _PYTHON_IMPORT, "        mod, handler_fn = _sandbox_load_handler(module_name, handler_name)\n"
    )
    worker_script = worker_script.replace(
        _PYTHON_INIT_ANSWER, 'json.dumps({"status": "error", "error": _sandbox_init_error(e)})'
    )
    return _PYTHON_INIT + worker_script


# Defined ahead of the engine's Node.js worker script: the error shapes of AWS's Node.js runtime
# (aws-lambda-nodejs-runtime-interface-client): an Error's `name`, else the thrown value's type.
_NODE_ERRORS = r"""
function _sandboxErrorType(err) {
  try {
    if (err instanceof Error || (err && typeof err.name === "string"
        && typeof err.message === "string" && typeof err.stack === "string")) return err.name;
    return typeof err;
  } catch (_) { return "handled"; }
}
function _sandboxErrorMessage(err) {
  try {
    if (err instanceof Error || (err && typeof err.message === "string")) return err.message;
    return String(err);
  } catch (_) { return ""; }
}
function _sandboxReport(errorType, errorMessage, stack) {
  return "__PREFIX__" + JSON.stringify(
    { errorType: errorType, errorMessage: errorMessage, stackTrace: stack ? String(stack).split("\n") : [] });
}
function _sandboxInitError(e) {
  if (e instanceof SyntaxError) return _sandboxReport("Runtime.UserCodeSyntaxError", String(e), e.stack);
  if (e && (e.code === "MODULE_NOT_FOUND" || e.code === "ERR_MODULE_NOT_FOUND")) {
    return _sandboxReport("Runtime.ImportModuleError", String(e), e.stack);
  }
  return _sandboxReport(_sandboxErrorType(e), _sandboxErrorMessage(e), e && e.stack);
}
""".replace("__PREFIX__", INIT_ERROR_PREFIX)

# The engine's Node.js worker script's lines that answer a failure, and what they become.
_NODE_ANSWERS = {
    "error: `Handler ${handlerName} is not a function in ${modPath}`": (
        'error: _sandboxReport("Runtime.HandlerNotFound", '
        'modPath + "." + handlerName + " is undefined or not exported")'
    ),
    'status: "error", error: e.message\n': 'status: "error", error: _sandboxInitError(e)\n',
    'status: "error", error: String(err.message || err), trace: err.stack || ""': (
        'status: "error", error: String(err.message || err), trace: (err && err.stack) || "",'
        " errorType: _sandboxErrorType(err), errorMessage: _sandboxErrorMessage(err)"
    ),
    'status: "error", error: e.message, trace: e.stack': (
        'status: "error", error: e.message, trace: e.stack,'
        " errorType: _sandboxErrorType(e), errorMessage: _sandboxErrorMessage(e)"
    ),
}


def reporting_node_errors(worker_script: str) -> str:
    """The engine's Node.js worker script, naming errors as AWS's Node.js runtime does.

    The engine names every Node handler error ``Runtime.HandlerError`` and a module that fails
    to load a ``RuntimeError``; AWS answers the error's own ``name`` (``Error`` for
    ``new Error()``, a custom class's name when it sets one), ``Runtime.ImportModuleError`` and
    ``Runtime.HandlerNotFound``.
    """
    for line, replacement in _NODE_ANSWERS.items():
        if worker_script.count(line) != 1:
            raise ValueError("the engine's Node.js worker script does not answer errors as expected")
        worker_script = worker_script.replace(line, replacement)
    return _NODE_ERRORS + worker_script


def init_error_report(message: str) -> dict[str, Any] | None:
    """The error report a patched worker put in its init failure's text, if there is one."""
    start = message.find(INIT_ERROR_PREFIX)
    if start < 0:
        return None
    try:
        report = json.loads(message[start + len(INIT_ERROR_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(report, dict) or not isinstance(report.get("errorType"), str):
        return None
    return report


def recording_error_reports(invoke: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Keep the error type a worker reported (init failure or handler error) for ``with_error_types``."""

    def invoke_recording(worker: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        _reports.last = None
        try:
            result = invoke(worker, *args, **kwargs)
        except Exception as error:
            report = init_error_report(str(error))
            if report is None:
                raise
            _reports.last = report
            # The engine logs this text: the AWS line, not the JSON.
            raise RuntimeError(f"{report['errorType']}: {report.get('errorMessage', '')}") from error
        if (
            isinstance(result, dict)
            and result.get("status") == "error"
            and isinstance(result.get("errorType"), str)
        ):
            _reports.last = {"errorType": result["errorType"], "errorMessage": result.get("errorMessage")}
        return result

    return invoke_recording
