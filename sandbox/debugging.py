"""`sandbox debug`: arm a function or a state for a debugger, over the engine's ``/_sandbox/debug`` route.

The engine runs an armed invocation under debugpy (Python) or Node's inspector on a worker of its
own (``sandbox.engine_patches.debugger``); this module names the target as the engine knows it,
and tells a client where to attach and how the engine's code folder maps to the project's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.engine_patches.debugger import ROUTE
from sandbox.engine_routes import engine_request
from sandbox.errors import SandboxError, UsageError

if TYPE_CHECKING:
    from sandbox.engine.state import EngineState
    from sandbox.settings import Settings
    from sandbox.stack import LocalStack

# The debug ports the MiniStack container publishes (compose.yaml, on 127.0.0.1 ports Docker picks).
CONTAINER_DEBUG_PORTS = range(5678, 5682)
LOCALSTACK_HINT = (
    "LocalStack has its own Lambda debug mode (LAMBDA_DEBUG_MODE, see the README); "
    "`sandbox debug` runs on the embedded engine and the MiniStack container"
)


class DebugUnsupportedError(SandboxError):
    """The engine cannot run a debugger (LocalStack has its own debug mode)."""


@dataclass(frozen=True)
class DebugTarget:
    """What the engine arms: a function by name, or a state's invocations of its functions."""

    label: str  # as the user named it
    function: str | None
    state: str | None
    functions: dict[str, str]  # function name -> its code folder in the project ("" when unknown)
    runtimes: dict[str, str]  # function name -> runtime


def _state_functions(stack: LocalStack, region: str, stack_name: str, state: str) -> list[str]:
    """The functions a Task state of the stack's state machines invokes."""
    from sandbox.executions import state_machines
    from sandbox.trace.execution import function_of_state, state_definitions

    sfn = stack.client("stepfunctions", region)
    found: list[str] = []
    for machine in state_machines(stack, region, stack_name):
        definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine.arn)["definition"])
        function = function_of_state(state_definitions(definition).get(state))
        if function and function not in found:
            found.append(function)
    return found


def _code_folders(settings: Settings) -> dict[str, Path]:
    """Each function's code folder (by logical id), as the template builds it."""
    from sandbox.packaging import load_template
    from sandbox.reload import ReloadPlan

    template_path = settings.template_path
    plan = ReloadPlan.from_template(load_template(template_path), template_path.parent)
    return {logical_id: build.source for logical_id, build in plan.builds.items()}


def resolve_target(settings: Settings, stack: LocalStack, target: str) -> DebugTarget:
    """The function or state the user named, as the engine's debug route takes it."""
    from sandbox.faults import StackTargets

    targets = StackTargets.of_stack(stack, settings.region, settings.stack_name)
    try:
        resolved = targets.resolve(target)
    except UsageError:
        known = [("Lambda task states", sorted(targets.states)), ("functions", sorted(targets.functions))]
        raise UsageError(
            f"the stack has no Task state or function named {target!r}",
            hint="; ".join(f"{label}: {', '.join(names)}" for label, names in known if names)
            or "the stack has no Lambda task state or function",
        ) from None
    if "mapping" in resolved:
        raise UsageError(
            f"{target} is a stream mapping: debug the function it invokes",
            hint="name the function, or the state",
        )
    if "function" in resolved:
        names = [resolved["function"]]
    else:
        names = _state_functions(stack, settings.region, settings.stack_name, resolved["state"])
        if not names:
            raise UsageError(
                f"state {target} invokes no function the sandbox can name", hint="name the function"
            )
    logical_of = {name: logical for logical, name in targets.functions.items()}
    folders = _code_folders(settings)
    lambda_client = stack.client("lambda", settings.region)
    runtimes = {
        name: str(lambda_client.get_function_configuration(FunctionName=name).get("Runtime", ""))
        for name in names
    }
    return DebugTarget(
        label=target,
        function=resolved.get("function"),
        state=resolved.get("state"),
        functions={name: str(folders.get(logical_of.get(name, ""), "")) for name in names},
        runtimes=runtimes,
    )


def published_port(engine: EngineState, port: int) -> int:
    """Where a client reaches the engine's debug ``port``: itself, or the container's published port."""
    if engine.container_id is None:
        return port
    from sandbox.engine.compose import run_command

    published = run_command(["docker", "port", engine.container_id, f"{port}/tcp"])
    host_ports = [
        line.rpartition(":")[2] for line in published.stdout.splitlines() if line.startswith("127.0.0.1:")
    ]
    if published.returncode != 0 or not host_ports or not host_ports[0].isdigit():
        raise UsageError(
            f"the engine's container does not publish port {port}",
            hint=f"the MiniStack container publishes the debug ports {CONTAINER_DEBUG_PORTS.start}-"
            f"{CONTAINER_DEBUG_PORTS.stop - 1}: pass one of them with --port",
        )
    return int(host_ports[0])


class DebugRoute:
    """The engine's armed debug sessions."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    @classmethod
    def of_engine(cls, engine: EngineState) -> DebugRoute:
        """The debug route of a running engine; LocalStack has none (it has its own debug mode)."""
        if engine.engine == "localstack":
            raise DebugUnsupportedError("`sandbox debug` does not run on LocalStack", hint=LOCALSTACK_HINT)
        return cls(engine.endpoint_url)

    def _call(self, method: str, path: str = "", body: Any = None) -> Any:
        status, answer = engine_request(self.endpoint_url, ROUTE + path, method=method, body=body)
        if status == 0:
            raise DebugUnsupportedError(
                "the engine does not answer the sandbox's debug route", hint=LOCALSTACK_HINT
            )
        if status >= 400:
            raise UsageError(str((answer or {}).get("message", f"the engine answered {status}")))
        return answer

    def arm(
        self, target: DebugTarget, *, port: int, wait: bool, wait_seconds: float, every: bool
    ) -> dict[str, Any]:
        body = {
            "port": port,
            "wait": wait,
            "waitSeconds": wait_seconds,
            "all": every,
            "functions": sorted(target.functions),
        }
        body |= {"function": target.function} if target.function else {"state": target.state}
        session: dict[str, Any] = self._call("POST", body=body)["session"]
        return session

    def disarm(self, port: int | None = None) -> list[dict[str, Any]]:
        disarmed: list[dict[str, Any]] = self._call("DELETE", "" if port is None else f"/{port}")["disarmed"]
        return disarmed

    def sessions(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self._call("GET")["sessions"]
        return listed

    def holds(self, execution: str | None = None) -> list[dict[str, Any]]:
        query = f"?execution={execution}" if execution else ""
        holds: list[dict[str, Any]] = self._call("GET", "/holds" + query)["holds"]
        return holds


def attach_configuration(session: dict[str, Any], target: DebugTarget, name: str) -> dict[str, Any]:
    """A VS Code attach configuration for an armed session (debugpy's, or Node's for Node.js)."""
    remote = session.get("remoteRoots") or {}
    host, port = str(session.get("host", "127.0.0.1")), int(session["port"])
    if any(runtime.startswith("nodejs") for runtime in target.runtimes.values()):
        function = next(iter(target.functions))
        return {
            "name": name,
            "type": "node",
            "request": "attach",
            "address": host,
            "port": port,
            "localRoot": target.functions[function] or "${workspaceFolder}",
            "remoteRoot": remote.get(function, ""),
        }
    return {
        "name": name,
        "type": "debugpy",
        "request": "attach",
        "connect": {"host": host, "port": port},
        "pathMappings": path_mappings(session, target),
        "justMyCode": True,
    }


def path_mappings(session: dict[str, Any], target: DebugTarget) -> list[dict[str, str]]:
    """How each armed function's code folder in the engine maps to the project's folder."""
    remote = session.get("remoteRoots") or {}
    return [
        {"localRoot": local, "remoteRoot": remote[name]}
        for name, local in sorted(target.functions.items())
        if local and name in remote
    ]


def write_launch_json(path: Path, configuration: dict[str, Any]) -> None:
    """Add or replace (by name) one configuration of a VS Code ``launch.json``."""
    document: dict[str, Any] = {"version": "0.2.0", "configurations": []}
    if path.is_file():
        try:
            document = json.loads(path.read_text())
        except ValueError as error:
            raise UsageError(
                f"{path} is not plain JSON ({error}): comments and trailing commas are not rewritten",
                hint="remove them, or add the configuration printed by `sandbox debug --json` by hand",
            ) from None
    kept = [c for c in document.get("configurations") or [] if c.get("name") != configuration["name"]]
    document["configurations"] = [*kept, configuration]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
