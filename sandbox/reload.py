"""Hot reload: on save, push only what changed to the running engine (the fast path).

Function code goes in by UpdateFunctionCode and the state machine by UpdateStateMachine,
straight to the resources the stack created; a full `sandbox deploy --target local` remains the
way to apply template changes.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from watchfiles import watch

from sandbox.packaging import SHARED_PACKAGE, build_function_zip, load_template
from sandbox.settings import Settings
from sandbox.stack import LocalStack, physical_id
from sandbox.targets import function_dependencies

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_lambda.type_defs import WaiterConfigTypeDef
    from mypy_boto3_stepfunctions import SFNClient


@dataclass(frozen=True)
class Update:
    """One thing pushed to the engine after a save."""

    logical_id: str
    source: str
    duration_ms: int
    saved_to_live_ms: int | None = None


@dataclass(frozen=True)
class ReloadPlan:
    """What each watched path feeds: function folders and the state machine definition."""

    functions: dict[str, str]  # code folder (relative) -> logical id
    state_machine: tuple[str, str] | None  # (definition path, logical id)
    substitutions: dict[str, str]  # ${Name} -> logical id of the function whose ARN it is

    @classmethod
    def from_template(cls, template: dict[str, Any]) -> ReloadPlan:
        functions: dict[str, str] = {}
        state_machine = None
        substitutions: dict[str, str] = {}
        for logical_id, resource in template.get("Resources", {}).items():
            properties = resource.get("Properties", {})
            if resource.get("Type") == "AWS::Serverless::Function" and isinstance(
                properties.get("CodeUri"), str
            ):
                functions[properties["CodeUri"].rstrip("/")] = logical_id
            elif resource.get("Type") == "AWS::Serverless::StateMachine":
                state_machine = (properties["DefinitionUri"], logical_id)
                for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
                    substitutions[key] = value["Fn::GetAtt"][0]
        return cls(functions, state_machine, substitutions)

    def affected(self, project_dir: Path, changed: Iterable[Path]) -> tuple[set[str], bool]:
        """The function logical ids to update, and whether the state machine changed."""
        functions: set[str] = set()
        is_state_machine = False
        for path in changed:
            relative = path.resolve().relative_to(project_dir.resolve()).as_posix()
            if self.state_machine and relative == self.state_machine[0]:
                is_state_machine = True
            elif relative.startswith(f"services/{SHARED_PACKAGE}/"):
                functions |= set(self.functions.values())  # every function packages the shared code
            else:
                functions |= {
                    lid for folder, lid in self.functions.items() if relative.startswith(folder + "/")
                }
        return functions, is_state_machine


class Reloader:
    """Pushes changed code and definitions into one local stack."""

    def __init__(self, settings: Settings, stack: LocalStack):
        self.settings = settings
        self.stack = stack
        template = load_template(settings.template_path)
        self.plan = ReloadPlan.from_template(template)
        # An engine that runs real Lambda runtimes (LocalStack) needs the dependencies in each zip.
        self.dependencies = function_dependencies(settings, stack.engine.engine, template)
        self.lambda_client: LambdaClient = stack.client("lambda", settings.region)
        self.sfn: SFNClient = stack.client("stepfunctions", settings.region)
        self._names: dict[str, str] = {}

    def name_of(self, logical_id: str) -> str:
        if logical_id not in self._names:
            self._names[logical_id] = physical_id(
                self.stack, self.settings.region, self.settings.stack_name, logical_id
            )
        return self._names[logical_id]

    def update_function(self, logical_id: str) -> Update:
        started = time.perf_counter()
        folder = next(folder for folder, lid in self.plan.functions.items() if lid == logical_id)
        name = self.name_of(logical_id)
        self.lambda_client.update_function_code(
            FunctionName=name, ZipFile=build_function_zip(self.settings.project_dir / folder)
        )
        # A 50 ms pace: botocore sleeps a float Delay as given, though the stubs type it an int.
        pace = cast("WaiterConfigTypeDef", {"Delay": 0.05, "MaxAttempts": 200})
        self.lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=pace)
        return Update(logical_id, folder, int((time.perf_counter() - started) * 1000))

    def update_state_machine(self) -> Update:
        started = time.perf_counter()
        assert self.plan.state_machine is not None
        path, logical_id = self.plan.state_machine
        arns = {key: self.lambda_client.get_function(FunctionName=self.name_of(lid))["Configuration"]["FunctionArn"]
                for key, lid in self.plan.substitutions.items()}  # fmt: skip
        text = (self.settings.project_dir / path).read_text()
        definition = re.sub(r"\$\{(\w+)\}", lambda m: arns.get(m.group(1), m.group(0)), text)
        json.loads(definition)  # refuse to push a definition that is not JSON
        self.sfn.update_state_machine(
            stateMachineArn=self.stack.outputs["StateMachineArn"], definition=definition
        )
        return Update(logical_id, path, int((time.perf_counter() - started) * 1000))

    def apply(self, changed: Iterable[Path], saved_at: float | None = None) -> list[Update]:
        """Update whatever the changed paths feed; returns one Update per pushed resource."""
        functions, is_state_machine = self.plan.affected(self.settings.project_dir, changed)
        updates = [self.update_function(lid) for lid in sorted(functions)]
        if is_state_machine:
            updates.append(self.update_state_machine())
        if saved_at is not None:
            live = int((time.time() - saved_at) * 1000)
            updates = [Update(u.logical_id, u.source, u.duration_ms, live) for u in updates]
        return updates


def watch_and_reload(
    settings: Settings,
    stack: LocalStack,
    on_update: Callable[[Update], None],
    on_error: Callable[[Exception], None],
    stop: threading.Event | None = None,
) -> None:
    """Watch services/ and state_machines/ until ``stop`` is set (or Ctrl-C); push each save."""
    reloader = Reloader(settings, stack)
    roots = [settings.project_dir / "services", settings.project_dir / "state_machines"]
    for changes in watch(*roots, stop_event=stop, debounce=50, step=20, raise_interrupt=False):
        paths = [
            Path(path)
            for _change, path in changes
            if not path.endswith((".pyc", "~")) and "__pycache__" not in path
        ]
        if not paths:
            continue
        saved_at = max((p.stat().st_mtime for p in paths if p.exists()), default=time.time())
        try:
            for update in reloader.apply(paths, saved_at=saved_at):
                on_update(update)
        except Exception as error:  # a bad save must not end the watch; say what failed
            on_error(error)
