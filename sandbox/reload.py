"""Hot reload: on save, push only what changed to the running engine (the fast path).

What is watched is what the template names: each function's ``CodeUri`` folder and each state
machine's ``DefinitionUri`` file. A saved file rebuilds the functions whose code folder holds it
(through the same builder and cache as a deploy, so a changed ``requirements.txt`` reinstalls)
and pushes UpdateFunctionCode to each; a saved definition pushes UpdateStateMachine. A full
`sandbox up` remains the way to apply template changes.
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

from sandbox.build import Build, build_zip, is_python, is_skipped_path
from sandbox.errors import DeployError
from sandbox.packaging import FUNCTION_TYPES, function_build, load_template, state_machine_definition
from sandbox.settings import Settings
from sandbox.stack import LocalStack, physical_id

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
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
    """What each watched path feeds: function builds and state machine definitions."""

    builds: dict[str, Build]  # function logical id -> how its code is built
    definitions: dict[str, str]  # state machine logical id -> its definition file (relative)
    substitutions: dict[str, dict[str, Any]]  # state machine logical id -> DefinitionSubstitutions
    project_dir: Path

    @classmethod
    def from_template(
        cls, template: dict[str, Any], project_dir: Path, architecture: str | None = None
    ) -> ReloadPlan:
        builds: dict[str, Build] = {}
        definitions: dict[str, str] = {}
        substitutions: dict[str, dict[str, Any]] = {}
        for logical_id, resource in (template.get("Resources") or {}).items():
            kind = resource.get("Type") if isinstance(resource, dict) else None
            properties = (resource.get("Properties") or {}) if kind else {}
            if kind in FUNCTION_TYPES:
                try:
                    build = function_build(template, logical_id, project_dir, architecture)
                except DeployError:
                    continue  # a function the sandbox cannot build was refused by the deploy already
                if isinstance(build, Build):
                    builds[logical_id] = build
            elif kind == "AWS::Serverless::StateMachine" and isinstance(properties.get("DefinitionUri"), str):
                definitions[logical_id] = Path(properties["DefinitionUri"]).as_posix()
                substitutions[logical_id] = dict(properties.get("DefinitionSubstitutions") or {})
        return cls(builds, definitions, substitutions, project_dir.resolve())

    def folder_of(self, logical_id: str) -> str:
        """A function's code folder, relative to the project, as the template names it."""
        source = self.builds[logical_id].source
        return (
            source.relative_to(self.project_dir).as_posix()
            if source.is_relative_to(self.project_dir)
            else str(source)
        )

    def watched_paths(self) -> list[Path]:
        """The folders to watch: every code folder and every definition's folder, none inside another."""
        paths = {build.source for build in self.builds.values()}
        paths |= {(self.project_dir / definition).parent for definition in self.definitions.values()}
        return sorted(
            p for p in paths if p.is_dir() and not any(o != p and p.is_relative_to(o) for o in paths)
        )

    def affected(self, changed: Iterable[Path]) -> tuple[set[str], set[str]]:
        """The function and state machine logical ids that the changed files feed."""
        functions: set[str] = set()
        machines: set[str] = set()
        for path in changed:
            resolved = path.resolve()
            for logical_id, build in self.builds.items():
                if resolved.is_relative_to(build.source) and not is_skipped_path(
                    resolved.relative_to(build.source).parts
                ):
                    functions.add(logical_id)
            for logical_id, definition in self.definitions.items():
                if resolved == (self.project_dir / definition).resolve():
                    machines.add(logical_id)
        return functions, machines


class Reloader:
    """Pushes changed code and definitions into one local stack.

    ``python_version_for`` and ``architecture`` are the deploy's (see ``package_template``), so
    a reloaded function is built exactly as the deployed one was.
    """

    def __init__(
        self,
        settings: Settings,
        stack: LocalStack,
        *,
        python_version_for: Callable[[str], str] | None = None,
        architecture: str | None = None,
        notify: Callable[[str], None] = lambda _: None,
    ):
        self.settings = settings
        self.stack = stack
        self.project_dir = settings.template_path.parent
        template = load_template(settings.template_path)
        self.plan = ReloadPlan.from_template(template, self.project_dir, architecture)
        self.resources = template.get("Resources") or {}
        self.python_version_for = python_version_for
        self.notify = notify
        self.lambda_client: LambdaClient = stack.client("lambda", settings.region)
        self.sfn: SFNClient = stack.client("stepfunctions", settings.region)
        self._names: dict[str, str] = {}

    def name_of(self, logical_id: str) -> str:
        if logical_id not in self._names:
            self._names[logical_id] = physical_id(
                self.stack, self.settings.region, self.settings.stack_name, logical_id
            )
        return self._names[logical_id]

    def _zip(self, build: Build) -> bytes:
        version = None
        if is_python(build.runtime) and self.python_version_for is not None:
            version = self.python_version_for(build.runtime)
        return build_zip(build, self.settings.cache_dir, python_version=version, notify=self.notify)

    def update_functions(self, logical_ids: Iterable[str]) -> list[Update]:
        """Build each distinct code folder once and push it to every function built from it."""
        updates: list[Update] = []
        by_build: dict[Build, list[str]] = {}
        for logical_id in sorted(logical_ids):
            by_build.setdefault(self.plan.builds[logical_id], []).append(logical_id)
        # A 50 ms pace: botocore sleeps a float Delay as given, though the stubs type it an int.
        pace = cast("WaiterConfigTypeDef", {"Delay": 0.05, "MaxAttempts": 200})
        for build, logical_ids_of_build in by_build.items():
            started = time.perf_counter()
            content = self._zip(build)
            # Every function of the build updates at once (each is Pending for a while, as on AWS),
            # then each is waited for: a shared folder's save is live in one update's time, not N.
            names = {logical_id: self.name_of(logical_id) for logical_id in logical_ids_of_build}
            for name in names.values():
                self.lambda_client.update_function_code(FunctionName=name, ZipFile=content)
            for logical_id, name in names.items():
                self.lambda_client.get_waiter("function_updated_v2").wait(
                    FunctionName=name, WaiterConfig=pace
                )
                elapsed = int((time.perf_counter() - started) * 1000)
                updates.append(Update(logical_id, self.plan.folder_of(logical_id), elapsed))
        return updates

    def _substitution(self, machine: str, key: str, value: Any) -> str:
        """The value CloudFormation gave a DefinitionSubstitutions entry, read from the live stack."""
        if isinstance(value, (str, int, float)):
            return str(value)
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            logical_id, attribute = target if isinstance(target, list) else str(target).split(".", 1)
            kind = (self.resources.get(logical_id) or {}).get("Type")
            if attribute == "Arn" and kind in FUNCTION_TYPES:
                function = self.lambda_client.get_function(FunctionName=self.name_of(logical_id))
                return function["Configuration"]["FunctionArn"]
            if attribute == "Arn" and self.name_of(logical_id).startswith("arn:"):
                return self.name_of(logical_id)
        if isinstance(value, dict) and isinstance(value.get("Ref"), str):
            if value["Ref"] in self.resources:
                return self.name_of(value["Ref"])
            cfn: CloudFormationClient = self.stack.client("cloudformation", self.settings.region)
            (described,) = cfn.describe_stacks(StackName=self.settings.stack_name)["Stacks"]
            parameters = {
                p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])
            }
            if value["Ref"] in parameters:
                return parameters[value["Ref"]]
        raise DeployError(
            f"cannot hot-reload {machine}: its substitution ${{{key}}} is {json.dumps(value)}, which the reloader does not resolve",
            hint="run `sandbox up` to apply this definition",
        )

    def update_state_machine(self, logical_id: str | None = None) -> Update:
        """Push a state machine's definition file, its substitutions resolved as the stack has them."""
        logical_id = logical_id or next(iter(self.plan.definitions))
        started = time.perf_counter()
        path = self.plan.definitions[logical_id]
        text = state_machine_definition(self.project_dir / path)
        values = {key: self._substitution(logical_id, key, value)
                  for key, value in self.plan.substitutions[logical_id].items() if f"${{{key}}}" in text}  # fmt: skip
        definition = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
        try:
            json.loads(definition)
        except json.JSONDecodeError as error:  # refuse to push a definition that is not JSON
            raise DeployError(
                f"{path} is not a valid definition: {error}", hint="fix the file and save again"
            ) from error
        self.sfn.update_state_machine(stateMachineArn=self.name_of(logical_id), definition=definition)
        return Update(logical_id, path, int((time.perf_counter() - started) * 1000))

    def apply(self, changed: Iterable[Path], saved_at: float | None = None) -> list[Update]:
        """Update whatever the changed paths feed; returns one Update per pushed resource."""
        functions, machines = self.plan.affected(changed)
        updates = self.update_functions(functions)
        updates += [self.update_state_machine(logical_id) for logical_id in sorted(machines)]
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
    *,
    python_version_for: Callable[[str], str] | None = None,
    architecture: str | None = None,
    on_ready: Callable[[list[Path]], None] = lambda _: None,
) -> None:
    """Watch what the template names until ``stop`` is set (or Ctrl-C); push each save.

    ``on_ready`` hears the watched folders once the watch is set up.
    """
    reloader = Reloader(settings, stack, python_version_for=python_version_for, architecture=architecture)
    roots = reloader.plan.watched_paths()
    on_ready(roots)
    if not roots:
        return
    for changes in watch(*roots, stop_event=stop, debounce=50, step=20, raise_interrupt=False):
        # Editors' backups are no save; what the packages leave out is dropped by plan.affected.
        paths = [Path(path) for _change, path in changes if not path.endswith("~")]
        if not paths:
            continue
        saved_at = max((p.stat().st_mtime for p in paths if p.exists()), default=time.time())
        try:
            for update in reloader.apply(paths, saved_at=saved_at):
                on_update(update)
        except Exception as error:  # a bad save must not end the watch; say what failed
            on_error(error)
