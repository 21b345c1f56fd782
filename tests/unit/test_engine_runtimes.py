"""The engine side of the Lambda runtimes: launchers, error names as AWS gives them, sns:publish attributes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine_patches import (
    INIT_ERROR_PREFIX,
    RUNTIMES_ENV,
    init_error_report,
    query_message_attributes,
    recording_error_reports,
    reporting_node_errors,
    reporting_python_init_errors,
    runtime_launcher,
    with_error_types,
    with_message_attributes,
    with_runtime_launchers,
)


def make_launcher(root: Path, runtime: str, *, executable: bool = True) -> Path:
    launcher = root / runtime / "launch"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\nexec true\n")
    launcher.chmod(0o755 if executable else 0o644)
    return launcher


# ------------------------------------------------------------------------------ launchers


def test_a_prepared_runtime_starts_its_workers_with_its_launcher(tmp_path: Path) -> None:
    # GIVEN a launcher for python3.12 and the engine's detection
    launcher = make_launcher(tmp_path, "python3.12")
    detect = with_runtime_launchers(
        lambda runtime: ("/engine/python", f"script of {runtime}"), {RUNTIMES_ENV: str(tmp_path)}
    )
    # WHEN the engine spawns a python3.12 worker, THEN the launcher runs the engine's worker script
    assert detect("python3.12") == (str(launcher), "script of python3.12")
    # AND a runtime without a launcher keeps the engine's interpreter
    assert detect("python3.11") == ("/engine/python", "script of python3.11")


def test_a_runtime_the_engine_cannot_run_stays_unsupported(tmp_path: Path) -> None:
    make_launcher(tmp_path, "java21")
    detect = with_runtime_launchers(lambda runtime: ("", ""), {RUNTIMES_ENV: str(tmp_path)})
    assert detect("java21") == ("", "")


@pytest.mark.parametrize("runtime", ["", "../python3.12", ".hidden", "a/b"])
def test_only_a_plain_runtime_name_is_looked_up(tmp_path: Path, runtime: str) -> None:
    assert runtime_launcher(runtime, {RUNTIMES_ENV: str(tmp_path)}) is None


def test_no_launcher_without_the_variable_or_without_the_execute_bit(tmp_path: Path) -> None:
    # GIVEN a launcher that is not executable, and an engine without the variable (the container engine)
    make_launcher(tmp_path, "python3.12", executable=False)
    assert runtime_launcher("python3.12", {RUNTIMES_ENV: str(tmp_path)}) is None
    assert runtime_launcher("python3.12", {}) is None


# ------------------------------------------------------------------------------ error names


def test_the_engines_worker_scripts_are_patched_and_unexpected_ones_refused() -> None:
    from ministack.core import lambda_runtime

    python = reporting_python_init_errors(lambda_runtime._PYTHON_WORKER_SCRIPT)
    assert "_sandbox_load_handler(module_name, handler_name)" in python
    compile(python, "_worker.py", "exec")  # still a valid script
    node = reporting_node_errors(lambda_runtime._NODEJS_WORKER_SCRIPT)
    assert node.count("_sandboxErrorType(") >= 3
    with pytest.raises(ValueError, match="Python worker script"):
        reporting_python_init_errors("print('another engine')")
    with pytest.raises(ValueError, match=r"Node\.js worker script"):
        reporting_node_errors("console.log('another engine')")


def test_an_init_report_is_read_from_the_engines_error_text() -> None:
    report = {"errorType": "Runtime.ImportModuleError", "errorMessage": "Unable to import module 'app': x"}
    assert init_error_report(f"Worker init failed: {INIT_ERROR_PREFIX}{json.dumps(report)}") == report
    assert init_error_report("Worker init failed: No module named 'app'") is None
    assert init_error_report(f"{INIT_ERROR_PREFIX}not json") is None
    assert init_error_report(f"{INIT_ERROR_PREFIX}" + json.dumps({"errorMessage": "no type"})) is None


def engine_warm_path(invoke: Any) -> Any:
    """What the engine's _execute_function_warm does with a worker's answer (its body keeps the message)."""

    def execute(worker: Any) -> dict[str, Any]:
        try:
            answer = invoke(worker)
        except Exception as error:
            return {
                "body": {"errorMessage": str(error), "errorType": type(error).__name__},
                "error": True,
                "log": "",
            }
        if answer["status"] == "ok":
            return {"body": answer["result"], "log": ""}
        return {
            "body": {"errorMessage": answer["error"], "errorType": "Runtime.HandlerError"},
            "error": True,
            "log": answer.get("trace", ""),
        }

    return with_error_types(execute)


def test_a_module_that_fails_to_import_is_runtime_import_module_error() -> None:
    # GIVEN a worker whose init failed with the report a patched worker writes
    report = {"errorType": "Runtime.ImportModuleError", "errorMessage": "Unable to import module 'app': No module named 'requests'", "stackTrace": []}  # fmt: skip

    def spawn_fails(worker: Any) -> dict[str, Any]:
        raise RuntimeError(f"Worker init failed: {INIT_ERROR_PREFIX}{json.dumps(report)}")

    # WHEN the engine's warm path answers
    result = engine_warm_path(recording_error_reports(spawn_fails))(object())
    # THEN the body is AWS's, and the function's log says it
    assert result["body"] == report
    assert (
        result["log"]
        == "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': No module named 'requests'"
    )


def test_a_node_error_is_named_by_its_name() -> None:
    answer = {"status": "error", "error": "card declined", "trace": "PaymentDeclined: card declined\n    at x",
              "errorType": "PaymentDeclined", "errorMessage": "card declined"}  # fmt: skip
    result = engine_warm_path(recording_error_reports(lambda worker: answer))(object())
    assert result["body"] == {"errorType": "PaymentDeclined", "errorMessage": "card declined"}


def test_a_report_does_not_outlive_its_invocation() -> None:
    # GIVEN an invocation that reported an error, then one that failed without a report (a timeout)
    answers = iter([
        {"status": "error", "error": "x", "errorType": "PaymentDeclined"},
        {"status": "error", "error": "Task timed out after 3.00 seconds"},
    ])  # fmt: skip
    execute = engine_warm_path(recording_error_reports(lambda worker: next(answers)))
    assert execute(object())["body"]["errorType"] == "PaymentDeclined"
    # THEN the second keeps the engine's own name
    assert execute(object())["body"]["errorType"] == "Runtime.HandlerError"


def test_other_exceptions_of_the_worker_pass_through() -> None:
    def broken(worker: Any) -> dict[str, Any]:
        raise RuntimeError("Worker process exited immediately")

    with pytest.raises(RuntimeError, match="exited immediately"):
        recording_error_reports(broken)(object())


# ------------------------------------------------------------------------------ sns:publish


def test_a_publish_tasks_message_attributes_reach_sns_in_its_query_form() -> None:
    # GIVEN a Task's parameters in the API's JSON shape
    seen: list[Any] = []
    publish = with_message_attributes(lambda resource, data: seen.append(data) or {"MessageId": "m"})
    task = {"TopicArn": "arn:t", "Message": {"a": 1}, "MessageAttributes": {
        "kind": {"DataType": "String", "StringValue": "refund"},
        "amount": {"DataType": "Number", "StringValue": 12},
    }}  # fmt: skip
    # WHEN published
    assert publish("arn:aws:states:::sns:publish", task) == {"MessageId": "m"}
    # THEN SNS reads each attribute, the rest of the parameters unchanged
    assert seen == [{
        "TopicArn": "arn:t", "Message": {"a": 1},
        "MessageAttributes.entry.1.Name": "kind", "MessageAttributes.entry.1.Value.DataType": "String",
        "MessageAttributes.entry.1.Value.StringValue": "refund",
        "MessageAttributes.entry.2.Name": "amount", "MessageAttributes.entry.2.Value.DataType": "Number",
        "MessageAttributes.entry.2.Value.StringValue": "12",
    }]  # fmt: skip


def test_a_publish_without_attributes_is_passed_as_it_is() -> None:
    task = {"TopicArn": "arn:t", "Message": "hi"}
    assert with_message_attributes(lambda resource, data: data)("r", task) is task
    assert query_message_attributes({"b": {"DataType": "Binary", "BinaryValue": "AAE="}}) == {
        "MessageAttributes.entry.1.Name": "b",
        "MessageAttributes.entry.1.Value.DataType": "Binary",
        "MessageAttributes.entry.1.Value.BinaryValue": "AAE=",
    }


# ------------------------------------------------------------- on the pinned engine itself

# Real workers of the patched engine, started by launchers made as sandbox.runtimes makes them
# (an empty SDK folder: nothing here needs the network). Its own interpreter: the patches
# change the engine's modules for the whole process.
ENGINE_PROBE = """
import io, json, os, sys, zipfile
from pathlib import Path
root = Path(sys.argv[1])
from sandbox.runtimes import node_launch_script, python_launch_script
for runtime, script in [
    ("python3.11", python_launch_script("python3.11", sys.executable, root / "sdk")),
    ("nodejs20.x", node_launch_script("nodejs20.x", sys.argv[2], None) if sys.argv[2] else None),
]:
    if script:
        (root / runtime).mkdir(parents=True)
        (root / runtime / "launch").write_text(script)
        (root / runtime / "launch").chmod(0o755)
(root / "sdk").mkdir()
os.environ["SANDBOX_RUNTIMES_DIR"] = str(root)
from sandbox.engine_patches import apply_patches
apply_patches()
from ministack.core import lambda_runtime
from ministack.services import lambda_svc

def run(name, runtime, handler, source):
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py" if runtime.startswith("python") else "index.js", source)
    config = {"FunctionName": name, "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:" + name,
              "Runtime": runtime, "Handler": handler, "Timeout": 10}
    return lambda_svc._execute_function_warm({"config": config, "code_zip": code.getvalue()}, {}, name)

results = {
    "import": run("a", "python3.11", "app.handler", "import pydantic\\ndef handler(e, c): return 1\\n"),
    "missing": run("b", "python3.11", "app.nothere", "def handler(e, c): return 1\\n"),
    "path": run("c", "python3.11", "app.handler", "import sys\\ndef handler(e, c): return sys.path\\n"),
    "raised": run("d", "python3.11", "app.handler",
                  "class Declined(Exception): pass\\ndef handler(e, c): raise Declined('no')\\n"),
}
if sys.argv[2]:
    results.update({
        "node_named": run("e", "nodejs20.x", "index.handler",
            "class PaymentDeclined extends Error { constructor(m) { super(m); this.name = 'PaymentDeclined'; } }\\n"
            "exports.handler = async () => { throw new PaymentDeclined('card declined'); };\\n"),
        "node_plain": run("f", "nodejs20.x", "index.handler", "exports.handler = async () => { throw new Error('x'); };\\n"),
        "node_import": run("g", "nodejs20.x", "index.handler", "require('left-pad');\\nexports.handler = async () => 1;\\n"),
        "node_missing": run("h", "nodejs20.x", "index.nothere", "exports.handler = async () => 1;\\n"),
    })
lambda_runtime.reset()
print(json.dumps({name: result["body"] for name, result in results.items()}))
"""


@pytest.fixture(scope="module")
def engine_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("runtimes")
    probe = subprocess.run(
        [sys.executable, "-c", ENGINE_PROBE, str(root), shutil.which("node") or ""],
        capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != RUNTIMES_ENV},
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    answers: dict[str, Any] = json.loads(probe.stdout.strip().splitlines()[-1])
    return answers


def test_on_the_engine_a_python_handler_sees_no_site_packages(engine_answers: dict[str, Any]) -> None:
    # GIVEN a handler importing pydantic (the engine's venv has it; the runtime does not)
    # THEN it fails as on AWS
    assert engine_answers["import"] == {
        "errorType": "Runtime.ImportModuleError",
        "errorMessage": "Unable to import module 'app': No module named 'pydantic'",
        "stackTrace": [],
    }
    # AND no site-packages is on its path
    assert not [entry for entry in engine_answers["path"] if "site-packages" in entry]
    assert engine_answers["missing"]["errorType"] == "Runtime.HandlerNotFound"
    assert engine_answers["missing"]["errorMessage"] == "Handler 'nothere' missing on module 'app'"
    assert engine_answers["raised"] == {"errorType": "Declined", "errorMessage": "no"}


def test_on_the_engine_node_errors_are_named_as_aws_names_them(engine_answers: dict[str, Any]) -> None:
    if "node_named" not in engine_answers:
        pytest.skip("node is not installed")
    assert engine_answers["node_named"] == {"errorType": "PaymentDeclined", "errorMessage": "card declined"}
    assert engine_answers["node_plain"] == {"errorType": "Error", "errorMessage": "x"}
    assert engine_answers["node_import"]["errorType"] == "Runtime.ImportModuleError"
    assert engine_answers["node_import"]["errorMessage"].startswith("Error: Cannot find module 'left-pad'")
    assert engine_answers["node_missing"]["errorType"] == "Runtime.HandlerNotFound"
    assert engine_answers["node_missing"]["errorMessage"] == "index.nothere is undefined or not exported"
