"""Step Functions Local mock configurations, run unchanged on the engine (``--mock-config --test-case``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError, UsageError
from sandbox.executions import StateMachineRef
from sandbox.stack import LocalStack

CONFIG_ROUTE = "/_ministack/config"
MOCK_CONFIG_KEY = "stepfunctions._sfn_mock_config"


def read_mock_config(path: Path) -> dict[str, Any]:
    """A mock configuration file: ``StateMachines`` and ``MockedResponses``, as Step Functions Local reads it."""
    try:
        doc = json.loads(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read the mock configuration {path}: {error.strerror or error}") from error
    except ValueError as error:
        raise UsageError(f"the mock configuration {path} is not JSON: {error}") from error
    if not isinstance(doc, dict) or not isinstance(doc.get("StateMachines"), dict):
        raise UsageError(
            f"the mock configuration {path} has no StateMachines",
            hint="Step Functions Local's format: StateMachines.<name>.TestCases.<case>.<state> -> a response "
            "of MockedResponses",
        )
    if not isinstance(doc.get("MockedResponses", {}), dict):
        raise UsageError(f"the mock configuration {path}: MockedResponses must be an object")
    return doc


def for_machine(
    doc: dict[str, Any], machine: StateMachineRef, test_case: str, source: Path
) -> dict[str, Any]:
    """The configuration with the machine's entry under the name the engine knows it by.

    A mock file names a state machine as its author created it in Step Functions Local: the
    template's logical id or the deployed name are both accepted.
    """
    machines: dict[str, Any] = doc["StateMachines"]
    key = next((k for k in (machine.name, machine.logical_id) if k and k in machines), None)
    if key is None:
        raise UsageError(
            f"the mock configuration {source} has no entry for {machine.label}",
            hint=f"its StateMachines: {', '.join(machines) or 'none'}",
        )
    cases = machines[key].get("TestCases") or {}
    if test_case not in cases:
        raise UsageError(
            f"{machine.label} has no test case {test_case!r} in {source}",
            hint=f"its test cases: {', '.join(cases) or 'none'}",
        )
    return {**doc, "StateMachines": {**machines, machine.name: machines[key]}}


def apply_mock_config(stack: LocalStack, config: dict[str, Any]) -> None:
    """Hand the configuration to the engine; executions started as ``ARN#TestCase`` then use it."""
    body = json.dumps({MOCK_CONFIG_KEY: config}).encode()
    request = urllib.request.Request(
        stack.engine.endpoint_url + CONFIG_ROUTE, data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            applied = json.loads(response.read() or b"{}").get("applied") or {}
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise SandboxError(f"cannot hand the mock configuration to the engine: {error}") from error
    if MOCK_CONFIG_KEY not in applied:
        raise SandboxError(
            f"the {stack.engine.engine} engine does not take Step Functions mock configurations",
            hint="run `sandbox up --engine embedded`",
        )
