"""The debugger's engine side (armed sessions, the worker script, a held Task's clock) and launch.json."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from ministack.core import lambda_runtime

from sandbox.debugging import DebugTarget, attach_configuration, write_launch_json
from sandbox.engine_patches.debugger import (
    DEBUG_ENV,
    HELD_TIMEOUT_SECONDS,
    DebugBook,
    DebugRequestError,
    debuggable_config,
    debugging_python_workers,
    handle_request,
)
from sandbox.engine_patches.timeouts import (
    holding_step_clock,
    signal_handler_start,
    timing_from_handler_start,
)
from sandbox.errors import UsageError


def test_a_one_shot_session_debugs_the_next_matching_invocation_only() -> None:
    # GIVEN a function armed once, and a state armed for every invocation of its function
    book = DebugBook()
    book.arm({"port": 5678, "function": "payment"})
    book.arm({"port": 5679, "state": "Reserve", "functions": ["inventory"], "all": True})
    # WHEN invocations arrive
    assert book.take("shipping", None) is None
    first = book.take("payment", "ChargePayment")
    # THEN the one-shot session is used once; the state's session matches its state only, every time
    assert first is not None and first.port == 5678
    assert book.take("payment", "ChargePayment") is None
    assert book.take("inventory", "Release") is None
    assert [book.take("inventory", "Reserve") is not None for _ in range(2)] == [True, True]
    assert [s["port"] for s in book.listed()] == [5679]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"port": 80, "function": "f"}, "port must be"),
        ({"port": 5678}, "name one target"),
        ({"port": 5678, "function": "f", "state": "S"}, "name one target"),
        ({"port": 5678, "state": "S", "functions": []}, "functions must list"),
        ({"port": 5678, "function": "f", "waitSeconds": 0}, "waitSeconds must be"),
        ([], "send"),
    ],
)
def test_a_wrong_arming_request_is_refused_with_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(DebugRequestError, match=message):
        DebugBook().arm(raw)


def test_one_port_serves_one_target_and_re_arming_a_target_moves_it() -> None:
    book = DebugBook()
    book.arm({"port": 5678, "function": "payment"})
    with pytest.raises(DebugRequestError, match="port 5678 is armed for payment"):
        book.arm({"port": 5678, "function": "shipping"})
    book.arm({"port": 5690, "function": "payment"})
    assert [s["port"] for s in book.listed()] == [5690]


def test_the_route_arms_lists_and_disarms() -> None:
    book = DebugBook()
    assert handle_request(book, "POST", "/_sandbox/debug", "", b"not json")[0] == 400
    status, answer = handle_request(
        book, "POST", "/_sandbox/debug", "", json.dumps({"port": 5678, "function": "f"}).encode()
    )
    assert status == 200 and answer["session"]["remoteRoots"]["f"].endswith("/sandbox-debug/f/code")
    assert handle_request(book, "DELETE", "/_sandbox/debug/5679", "", b"")[0] == 404
    assert (
        handle_request(book, "DELETE", "/_sandbox/debug/5678", "", b"")[1]["disarmed"][0]["function"] == "f"
    )
    assert handle_request(book, "GET", "/_sandbox/debug", "", b"") == (200, {"sessions": []})


def test_a_debug_worker_has_its_timeout_lifted_and_its_debugger_set() -> None:
    book = DebugBook()
    session = book.arm({"port": 5678, "function": "f", "waitSeconds": 3})
    config = {"Runtime": "python3.12", "Timeout": 10, "Environment": {"Variables": {"TABLE": "t"}}}
    python = debuggable_config(config, session, "/tmp/debugpy-path")
    assert python["Timeout"] == HELD_TIMEOUT_SECONDS and config["Timeout"] == 10
    settings = json.loads(python["Environment"]["Variables"][DEBUG_ENV])
    assert settings | {"host": "-"} == {"host": "-", "port": 5678, "wait": True, "waitSeconds": 3.0,
                                         "path": "/tmp/debugpy-path", "timeout": 10}  # fmt: skip
    assert python["Environment"]["Variables"]["TABLE"] == "t"
    node = debuggable_config({**config, "Runtime": "nodejs20.x"}, session, "/tmp/debugpy-path")
    assert node["Environment"]["Variables"]["NODE_OPTIONS"] == "--inspect-brk=127.0.0.1:5678"


def test_the_engine_s_python_worker_script_gets_the_debugger_hooks() -> None:
    script = debugging_python_workers(lambda_runtime._PYTHON_WORKER_SCRIPT)
    compile(script, "_worker.py", "exec")
    assert "_sandbox_debug = _sandbox_debugger()" in script
    assert script.index("_sandbox_wait_for_debugger(_sandbox_debug)") < script.index(
        "result = handler_fn(event, context)"
    )
    with pytest.raises(ValueError, match="does not start handlers"):
        debugging_python_workers("print('another engine')")


class TaskTimedOut(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)


def test_a_held_step_does_not_time_out_and_its_clock_runs_again_after() -> None:
    # GIVEN a handler a debugger holds for 0.5 s, under a 0.2 s TimeoutSeconds
    released = threading.Event()

    def held_handler(resource: str, input_data: Any) -> Any:
        signal_handler_start()
        with holding_step_clock():
            released.wait(0.5)
        return {"ok": input_data}

    invoke = timing_from_handler_start(held_handler, TaskTimedOut)
    # THEN the step succeeds
    assert invoke("arn:aws:states:::lambda:invoke", 1, 0.2) == {"ok": 1}

    # AND a handler that runs on after its hold past the timeout still times out
    def runs_on(resource: str, input_data: Any) -> Any:
        signal_handler_start()
        with holding_step_clock():
            pass
        released.wait(1.0)
        return input_data

    with pytest.raises(TaskTimedOut):
        timing_from_handler_start(runs_on, TaskTimedOut)("arn:aws:states:::lambda:invoke", 1, 0.2)


def test_launch_json_gets_one_attach_configuration_by_name(tmp_path: Path) -> None:
    target = DebugTarget(
        "ChargePayment", None, "ChargePayment", {"payment": "/p/services"}, {"payment": "python3.12"}
    )
    session = {
        "host": "127.0.0.1",
        "port": 5678,
        "remoteRoots": {"payment": "/tmp/sandbox-debug/payment/code"},
    }
    configuration = attach_configuration(session, target, "Attach to the sandbox (ChargePayment)")
    assert configuration["pathMappings"] == [
        {"localRoot": "/p/services", "remoteRoot": "/tmp/sandbox-debug/payment/code"}
    ]
    launch = tmp_path / ".vscode" / "launch.json"
    launch.parent.mkdir()
    launch.write_text(
        json.dumps({"version": "0.2.0", "configurations": [{"name": "mine", "type": "python"}]})
    )
    write_launch_json(launch, configuration)
    write_launch_json(launch, configuration | {"justMyCode": False})
    names = [c["name"] for c in json.loads(launch.read_text())["configurations"]]
    assert names == ["mine", "Attach to the sandbox (ChargePayment)"]
    launch.write_text('{"configurations": [] // a comment\n}')
    with pytest.raises(UsageError, match="not plain JSON"):
        write_launch_json(launch, configuration)
