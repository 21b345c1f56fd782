"""AWS FIS experiment templates in both directions: run their Lambda actions locally, write one for AWS.

FIS breaks Lambda invocations with three actions on targets of type ``aws:lambda:function``
(action target key ``Functions``), each on ``invocationPercentage`` of invocations (1-100, default
100) for ``duration`` (ISO 8601, e.g. ``PT5M``); parameters are strings:

- ``aws:lambda:invocation-error``: ``preventExecution`` true, the handler never runs (``error``);
  false, it runs and the caller still gets an error (``error-after``);
- ``aws:lambda:invocation-add-delay``: ``startupDelayMilliseconds`` (0-900000, default 1000) before
  the handler starts (``delay``);
- ``aws:lambda:invocation-http-integration-response``: ``statusCode`` and ``contentTypeHeader``;
  ``preventExecution`` false runs the handler and replaces its answer (``http-response``).

A target names functions by ``resourceArns`` or by ``resourceTags`` (all tags must match); the
tags CloudFormation puts on every function it creates (``aws:cloudformation:stack-name``,
``aws:cloudformation:logical-id``) name the same function in any account, so the export uses them
and the import reads the logical id back. What a sandbox rule scopes finer than FIS can
(attempts, one execution, one record, a seed) or a kind FIS has no action for (throttle, timeout,
crash, the stream kinds) is listed, never silently widened.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.errors import UsageError
from sandbox.faults import STREAM_KINDS, FaultSpec, StackTargets
from sandbox.json_text import read_document
from sandbox.trace.execution import function_of_state, state_definitions

if TYPE_CHECKING:
    from sandbox.stack import LocalStack

INVOCATION_ERROR = "aws:lambda:invocation-error"
ADD_DELAY = "aws:lambda:invocation-add-delay"
HTTP_RESPONSE = "aws:lambda:invocation-http-integration-response"
LAMBDA_ACTIONS = (INVOCATION_ERROR, ADD_DELAY, HTTP_RESPONSE)
FUNCTION_RESOURCE_TYPE = "aws:lambda:function"
FUNCTIONS_KEY = "Functions"
STACK_NAME_TAG = "aws:cloudformation:stack-name"
LOGICAL_ID_TAG = "aws:cloudformation:logical-id"
PLACEHOLDER_ROLE_ARN = "arn:aws:iam::ACCOUNT_ID:role/FIS_EXPERIMENT_ROLE"
DEFAULT_DURATION = "PT10M"
DEFAULT_ADD_DELAY_MS = 1000  # FIS's own default for startupDelayMilliseconds
MAX_ADD_DELAY_MS = 900_000
FIS_NAME_LIMIT = 64
_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_FUNCTION_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[^:]*:[^:]*:function:(?P<name>[^:]+)(?::(?P<qualifier>.+))?$"
)
_UNSUPPORTED_KINDS = {
    "throttle": "FIS has no Lambda throttle action",
    "timeout": (
        "FIS has no timeout action (an invocation-add-delay longer than the function's Timeout "
        "gives one: export a delay rule instead)"
    ),
    "crash": "FIS has no action that kills the runtime after the handler ran",
    "cold-start": "FIS has no action that discards a warm execution environment",
}
_STREAM_REASON = "FIS's Lambda actions break invocations, not a stream mapping's deliveries"


@dataclass
class FisImport:
    """The rules an FIS template's Lambda actions make, and what it holds that they could not."""

    specs: list[FaultSpec] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per action not imported, and why
    notes: list[str] = field(default_factory=list)  # imported, but run locally a little differently


@dataclass
class FisExport:
    """An FIS CreateExperimentTemplate request body, and the rules it could not express."""

    template: dict[str, Any]
    unsupported: list[str] = field(default_factory=list)  # one line per rule left out, and why
    notes: list[str] = field(default_factory=list)  # exported, but FIS runs it a little differently


# ------------------------------------------------------------------ durations


def parse_duration(text: Any, *, where: str) -> float:
    """Seconds in an ISO 8601 duration as FIS writes it (``PT30S``, ``PT5M``, ``PT1H30M``)."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groupdict().values()) or (isinstance(text, str) and text.endswith("T")):
        raise UsageError(
            f"{where}: duration {text!r} is not an ISO 8601 duration",
            hint="write it as FIS does: PT30S, PT5M, PT1H30M",
        )
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    seconds = (
        parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )
    if seconds <= 0:
        raise UsageError(f"{where}: duration {text!r} is not longer than zero", hint="e.g. PT5M")
    return seconds


def format_duration(seconds: float) -> str:
    """An ISO 8601 duration in whole seconds (rounded up), as FIS takes it: ``PT1H30M``."""
    whole = max(1, math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "PT" + "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if value
    )


# ------------------------------------------------------------------ import


def read_fis(path: Path) -> FisImport:
    """Import an FIS experiment template file (JSON, or YAML); UsageError when it is not one."""
    return import_fis(read_document(path, "FIS template"), source=path.name)


def import_fis(doc: Any, *, source: str) -> FisImport:
    """The fault rules an FIS experiment template's ``aws:lambda:*`` actions make, one per (action, function).

    Takes the CreateExperimentTemplate body or GetExperimentTemplate's answer
    (``{"experimentTemplate": {...}}``). An action of another service, or whose targets name no
    function by ARN or by the ``aws:cloudformation:logical-id`` tag, is skipped with a line saying why.
    ``contentTypeHeader`` is ignored: the sandbox answers the status with a JSON body. An
    absent ``preventExecution`` reads as false, and an absent ``duration`` as until cleared.
    """
    if isinstance(doc, dict) and isinstance(doc.get("experimentTemplate"), dict):
        doc = doc["experimentTemplate"]
    if not isinstance(doc, dict) or not isinstance(doc.get("actions"), dict):
        raise UsageError(
            f"{source} is not an AWS FIS experiment template: it has no actions mapping",
            hint="export one with `aws fis get-experiment-template --id ID`, or write "
            '{"actions": {...}, "targets": {...}}',
        )
    targets = doc.get("targets") or {}
    if not isinstance(targets, dict):
        raise UsageError(f"{source}: targets must be a mapping of target names, not {targets!r}")
    result = FisImport()
    for name, action in doc["actions"].items():
        where = f"{source}, action {name}"
        if not isinstance(action, dict):
            raise UsageError(f"{where}: an action is a mapping with actionId, not {action!r}")
        action_id = action.get("actionId")
        if action_id not in LAMBDA_ACTIONS:
            result.skipped.append(
                f"{name} ({action_id}): not a Lambda invocation action; "
                f"the sandbox runs {', '.join(LAMBDA_ACTIONS)}"
            )
            continue
        functions, reason = _functions_of(name, action, targets, result.notes)
        if not functions:
            result.skipped.append(f"{name} ({action_id}): {reason}")
            continue
        made = _specs_of_action(name, action_id, action, functions, where, result)
        result.specs.extend(made)
        if made and action.get("startAfter"):
            result.notes.append(
                f"{name}: FIS starts it after {', '.join(map(str, action['startAfter']))}; "
                "locally every imported rule starts at once"
            )
    return result


def _specs_of_action(
    name: str, action_id: str, action: dict[str, Any], functions: list[str], where: str, result: FisImport
) -> list[FaultSpec]:
    parameters = action.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise UsageError(f"{where}: parameters must be a mapping of strings, not {parameters!r}")
    scope: dict[str, Any] = {"percent": _percent(parameters.get("invocationPercentage"), where)}
    if parameters.get("duration") is None:
        result.notes.append(f"{name}: no duration, so the rules last until cleared")
    else:
        scope["duration_seconds"] = parse_duration(parameters["duration"], where=where)
    if action_id == INVOCATION_ERROR:
        prevent = _boolean(parameters.get("preventExecution"), "preventExecution", where)
        kind: dict[str, Any] = {"kind": "error" if prevent else "error-after"}
    elif action_id == ADD_DELAY:
        delay = _whole(
            parameters.get("startupDelayMilliseconds", DEFAULT_ADD_DELAY_MS),
            "startupDelayMilliseconds",
            where,
        )
        if delay == 0:
            result.skipped.append(f"{name} ({action_id}): a delay of 0 ms changes nothing")
            return []
        kind = {"kind": "delay", "delay_ms": delay}
    else:
        status = _whole(parameters.get("statusCode"), "statusCode", where)
        if not 100 <= status <= 599:
            result.skipped.append(
                f"{name} ({action_id}): status {status} is not an HTTP status the sandbox answers (100-599)"
            )
            return []
        prevent = _boolean(parameters.get("preventExecution"), "preventExecution", where)
        kind = {"kind": "http-response", "status": status, "run_handler": not prevent}
    return [FaultSpec(target=function, **kind, **scope) for function in functions]


def _functions_of(
    name: str, action: dict[str, Any], targets: dict[str, Any], notes: list[str]
) -> tuple[list[str], str]:
    """The functions (logical ids or names) an action's targets name, or none and why."""
    references = action.get("targets") or {}
    if not isinstance(references, dict) or not references:
        return [], "it names no target"
    functions: list[str] = []
    for target_name in references.values():
        target = targets.get(target_name)
        if not isinstance(target, dict):
            return [], f"its target {target_name!r} is not in the template's targets"
        if target.get("resourceType") != FUNCTION_RESOURCE_TYPE:
            return (
                [],
                f"its target {target_name} is of type {target.get('resourceType')}, not {FUNCTION_RESOURCE_TYPE}",
            )
        found, reason = _functions_of_target(target_name, target)
        if not found:
            return [], reason
        functions.extend(found)
        _note_target_scope(name, target_name, target, notes)
    return list(dict.fromkeys(functions)), ""


def _functions_of_target(target_name: str, target: dict[str, Any]) -> tuple[list[str], str]:
    arns = target.get("resourceArns")
    tags = target.get("resourceTags")
    if arns and tags:
        return [], f"its target {target_name} has both resourceArns and resourceTags, which FIS refuses"
    if arns:
        if not isinstance(arns, list):
            return [], f"its target {target_name}'s resourceArns is not a list"
        names = []
        for arn in arns:
            match = _FUNCTION_ARN.match(arn) if isinstance(arn, str) else None
            if match is None:
                return [], f"its target {target_name}: {arn!r} is not a Lambda function ARN"
            names.append(match["name"])
        return names, ""
    if isinstance(tags, dict) and isinstance(tags.get(LOGICAL_ID_TAG), str) and tags[LOGICAL_ID_TAG]:
        return [tags[LOGICAL_ID_TAG]], ""
    if tags:
        return [], (
            f"its target {target_name} selects functions by tags, and tags other than "
            f"{LOGICAL_ID_TAG} cannot be resolved locally"
        )
    return [], f"its target {target_name} names no function (no resourceArns, no resourceTags)"


def _note_target_scope(name: str, target_name: str, target: dict[str, Any], notes: list[str]) -> None:
    mode = str(target.get("selectionMode") or "ALL")
    if mode != "ALL":
        notes.append(
            f"{name}: target {target_name} selects {mode} at random; locally every function it names is broken"
        )
    if target.get("filters"):
        notes.append(f"{name}: target {target_name}'s filters are not applied locally")
    if (target.get("parameters") or {}).get("functionQualifier"):
        notes.append(
            f"{name}: target {target_name}'s functionQualifier is ignored: locally every version is broken"
        )
    arns = target.get("resourceArns") or []
    if any(
        isinstance(arn, str) and (match := _FUNCTION_ARN.match(arn)) and match["qualifier"] for arn in arns
    ):
        notes.append(
            f"{name}: target {target_name}'s ARN qualifiers are ignored: locally every version is broken"
        )
    other_tags = sorted(set(target.get("resourceTags") or {}) - {LOGICAL_ID_TAG, STACK_NAME_TAG})
    if other_tags:
        notes.append(f"{name}: target {target_name}'s tags {', '.join(other_tags)} are not checked locally")


def _percent(value: Any, where: str) -> float:
    if value is None:
        return 100.0
    try:
        percent = float(value)
    except (TypeError, ValueError):
        percent = math.nan
    if isinstance(value, bool) or not 0 < percent <= 100:
        raise UsageError(f"{where}: invocationPercentage {value!r} is not a percentage from 1 to 100")
    return percent


def _boolean(value: Any, name: str, where: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise UsageError(f'{where}: {name} {value!r} is neither "true" nor "false"')


def _whole(value: Any, name: str, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise UsageError(f"{where}: {name} {value!r} is not a whole number")
    if name == "startupDelayMilliseconds" and number > MAX_ADD_DELAY_MS:
        raise UsageError(f"{where}: {name} {number} is above FIS's limit of {MAX_ADD_DELAY_MS}")
    return number


# ------------------------------------------------------------------ export


def export_fis(
    specs: list[FaultSpec],
    *,
    stack_name: str,
    role_arn: str | None = None,
    description: str | None = None,
    state_functions: Mapping[str, str] | None = None,
    stack_targets: StackTargets | None = None,
) -> FisExport:
    """An FIS CreateExperimentTemplate request body for the rules FIS can express, on the stack's functions.

    Functions are selected by the tags CloudFormation sets (stack name and logical id, both must
    match), so the template works wherever the same template is deployed under ``stack_name``.
    A rule on a state goes on the state's function when ``state_functions`` (state -> function
    logical id, see :func:`task_functions`) knows it. With ``stack_targets``, a target is looked up
    in the stack (a function's name maps back to its logical id); without, a target that is not a
    known state is taken as a function's logical id. UsageError when no rule can be expressed.
    """
    if not specs:
        raise UsageError(
            "there are no fault rules to export", hint="add some with `sandbox faults add` or a plan file"
        )
    states = state_functions or {}
    export = FisExport(template={})
    targets: dict[str, dict[str, Any]] = {}
    target_names: dict[str, str] = {}  # function logical id -> FIS target name
    actions: dict[str, dict[str, Any]] = {}
    for spec in specs:
        label = _label(spec)
        function, reasons = _function_for(spec, states, stack_targets)
        reasons += _scope_reasons(spec)
        if spec.kind == "delay" and (spec.delay_ms or 0) > MAX_ADD_DELAY_MS:
            reasons.append(f"FIS delays at most {MAX_ADD_DELAY_MS} ms")
        if reasons or function is None:
            export.unsupported.append(f"{label}: {'; '.join(reasons)}")
            continue
        if function not in target_names:
            target_names[function] = _unique(_fis_name(function), targets)
            targets[target_names[function]] = {
                "resourceType": FUNCTION_RESOURCE_TYPE,
                "resourceTags": {STACK_NAME_TAG: stack_name, LOGICAL_ID_TAG: function},
                "selectionMode": "ALL",
            }
        if spec.target in states:
            export.notes.append(
                f"{label}: FIS cannot target a state, so it breaks every invocation of {function}, "
                f"not only those of state {spec.target}"
            )
        parameters = _parameters(spec, label, export.notes)
        action_name = _unique(_fis_name(f"{spec.target}-{spec.kind}"), actions)
        actions[action_name] = {
            "actionId": _ACTION_OF_KIND[spec.kind],
            "description": f"sandbox rule {label}"[:512],
            "parameters": parameters,
            "targets": {FUNCTIONS_KEY: target_names[function]},
        }
    if not actions:
        raise UsageError(
            f"none of the {len(specs)} fault rule(s) can be expressed in AWS FIS",
            hint=export.unsupported[0] if len(export.unsupported) == 1 else "see why for each rule below",
            details="\n".join(export.unsupported),
        )
    if role_arn is None:
        export.notes.append(
            f"roleArn is a placeholder ({PLACEHOLDER_ROLE_ARN}): replace it with a role FIS can assume"
        )
    export.notes.append(
        "FIS's Lambda actions need the AWS FIS Lambda extension layer and its S3 configuration "
        "on every targeted function (see the FIS user guide, 'Use the aws:lambda:function actions')"
    )
    export.template = {
        "description": (description or f"Fault rules of the stack {stack_name}, exported by the sandbox")[
            :512
        ],
        "targets": targets,
        "actions": actions,
        "stopConditions": [{"source": "none"}],
        "roleArn": role_arn or PLACEHOLDER_ROLE_ARN,
        "tags": {"Name": f"{stack_name}-sandbox-faults"[:256]},
    }
    return export


_ACTION_OF_KIND = {
    "error": INVOCATION_ERROR,
    "error-after": INVOCATION_ERROR,
    "delay": ADD_DELAY,
    "http-response": HTTP_RESPONSE,
}


def _label(spec: FaultSpec) -> str:
    attempts = str(spec.attempts)
    return f"{spec.target}:{spec.kind}" + ("" if attempts == "all" else f":{attempts}")


def _function_for(
    spec: FaultSpec, states: Mapping[str, str], stack: StackTargets | None
) -> tuple[str | None, list[str]]:
    """The function logical id FIS would target for the rule, or None and why not."""
    if spec.kind in _UNSUPPORTED_KINDS:
        return None, [_UNSUPPORTED_KINDS[spec.kind]]
    if spec.kind in STREAM_KINDS:
        return None, [_STREAM_REASON]
    if spec.target in states:
        return states[spec.target], []
    if stack is None:
        return spec.target, []
    if spec.target in stack.states:
        return None, [
            "FIS cannot target a Step Functions state, and no single function is known for it "
            "(it invokes none, or different ones in different state machines)"
        ]
    if spec.target in stack.functions:
        return spec.target, []
    by_name = {name: logical for logical, name in stack.functions.items()}
    if spec.target in by_name:
        return by_name[spec.target], []
    if spec.target in stack.mappings or spec.target in stack.mappings.values():
        return None, [f"FIS targets functions, not event source mappings ({_STREAM_REASON})"]
    return None, ["the stack has no state, function or stream mapping by that name"]


def _scope_reasons(spec: FaultSpec) -> list[str]:
    reasons = []
    if str(spec.attempts) != "all":
        reasons.append("FIS breaks a percentage of invocations, not chosen attempts")
    if spec.execution:
        reasons.append("FIS cannot scope a fault to one execution")
    if spec.record:
        reasons.append("FIS cannot scope a fault to one stream record")
    return reasons


def _parameters(spec: FaultSpec, label: str, notes: list[str]) -> dict[str, str]:
    if spec.duration_seconds is None:
        duration = DEFAULT_DURATION
        notes.append(
            f"{label}: lasts until cleared locally; FIS needs a duration, so it lasts {DEFAULT_DURATION}"
        )
    else:
        duration = format_duration(spec.duration_seconds)
        if spec.duration_seconds % 1:
            notes.append(f"{label}: duration rounded up to whole seconds ({duration})")
    parameters = {"duration": duration}
    if spec.percent < 100:
        percent = max(1, round(spec.percent))
        if percent != spec.percent:
            notes.append(f"{label}: FIS takes a whole percentage, so {spec.percent:g}% becomes {percent}%")
        parameters["invocationPercentage"] = str(percent)
        if spec.seed is not None:
            notes.append(f"{label}: FIS draws its own invocations; the seed {spec.seed} is dropped")
    if spec.error or spec.cause:
        dropped = " and ".join(repr(text) for text in (spec.error, spec.cause) if text)
        notes.append(f"{label}: FIS sets no error name, cause or message; {dropped} is dropped")
    if spec.kind in ("error", "error-after"):
        parameters["preventExecution"] = "true" if spec.kind == "error" else "false"
    elif spec.kind == "delay":
        parameters["startupDelayMilliseconds"] = str(spec.delay_ms)
    else:
        parameters["statusCode"] = str(spec.status)
        parameters["preventExecution"] = "false" if spec.run_handler else "true"
        parameters["contentTypeHeader"] = "application/json"
    return parameters


def _fis_name(text: str) -> str:
    """A name FIS takes for a target or an action (no whitespace, at most 64 characters)."""
    return re.sub(r"\s+", "-", text)[:FIS_NAME_LIMIT] or "rule"


def _unique(name: str, taken: Mapping[str, Any]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        suffix = f"-{number}"
        candidate, number = name[: FIS_NAME_LIMIT - len(suffix)] + suffix, number + 1
    return candidate


# ------------------------------------------------------------------ states -> functions


def task_functions(definitions: list[dict[str, Any]], functions: Mapping[str, str]) -> dict[str, str]:
    """Task state name -> the logical id of the one function it invokes, over the definitions given.

    ``functions`` maps logical ids to function names (``StackTargets.functions``). A state that
    invokes no function of the stack, or different functions in different state machines, is left
    out: no single FIS target stands for it.
    """
    by_name = {name: logical for logical, name in functions.items()}
    found: dict[str, set[str | None]] = {}
    for definition in definitions:
        for state_name, state in state_definitions(definition).items():
            if state.get("Type") == "Task":
                # None stands for a Task of no function of the stack: the state then has no single one
                found.setdefault(state_name, set()).add(by_name.get(function_of_state(state) or ""))
    return {
        state: logical
        for state, logicals in found.items()
        if len(logicals) == 1 and (logical := next(iter(logicals))) is not None
    }


def stack_state_functions(
    stack: LocalStack, region: str, stack_name: str, targets: StackTargets
) -> dict[str, str]:
    """:func:`task_functions` over the deployed state machines of a stack."""
    from sandbox.executions import state_machines

    sfn = stack.client("stepfunctions", region)
    definitions = [
        json.loads(sfn.describe_state_machine(stateMachineArn=machine.arn)["definition"])
        for machine in state_machines(stack, region, stack_name)
    ]
    return task_functions(definitions, targets.functions)
