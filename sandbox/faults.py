"""Fault rules for any stack: what a user asks for, where it lands in the stack, and the engine's book.

A rule names a target as a user knows it (a state of any of the stack's state machines, a
function's logical id or name, a stream mapping's logical id or UUID) and a kind in the
vocabulary of the engine's invoke boundary (``error``, ``error-after``, ``delay``, ``timeout``,
``throttle``, ``http-response``, ``crash``, ``cold-start``, and on a stream mapping ``duplicate-delivery``,
``delayed-delivery``, ``poison``). The stack resolves the target to what the engine matches on;
the engine's patch applies the rule (``sandbox/engine_patches/faults.py``).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.errors import SandboxError, UsageError
from sandbox.executions import state_machines
from sandbox.fault_kinds import RULE_KINDS
from sandbox.json_text import read_document
from sandbox.trace.execution import function_of_state, state_definitions

if TYPE_CHECKING:
    from sandbox.stack import LocalStack

KINDS = RULE_KINDS
STREAM_KINDS = frozenset({"duplicate-delivery", "delayed-delivery", "poison"})
KINDS_WITH_DELAY = frozenset({"delay", "delayed-delivery"})
ROUTE = "/_sandbox/faults"
FUNCTION_TYPES = frozenset({"AWS::Lambda::Function", "AWS::Serverless::Function"})
MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"
_ATTEMPTS = re.compile(r"^(?P<first>\d+)(?:-(?P<last>\d*))?$")


class FaultsUnsupportedError(SandboxError):
    """The engine has no fault hook (LocalStack): rules run on the sandbox's own engine."""


class UnknownFaultTargetError(UsageError):
    """The stack has no state, function or stream mapping by the name a rule targets."""


@dataclass(frozen=True)
class Attempts:
    """Which attempts a rule fires on: FIRST through LAST (None: every later one too)."""

    first: int = 1
    last: int | None = None

    @classmethod
    def parse(cls, text: str) -> Attempts:
        """``all``, ``N``, ``N-M`` or ``N-`` (from N on)."""
        if text.strip() in ("all", "*", ""):
            return cls()
        match = _ATTEMPTS.match(text.strip())
        if not match:
            raise UsageError(f"attempts {text!r}: expected all, N, N-M or N- (e.g. 1, 1-2)")
        first = int(match["first"])
        last = None if match["last"] == "" else int(match["last"] or first)
        if first < 1 or (last is not None and last < first):
            raise UsageError(f"attempts {text!r}: attempts count from 1, and the range must not be empty")
        return cls(first, last)

    def __str__(self) -> str:
        if self.first == 1 and self.last is None:
            return "all"
        if self.last is None:
            return f"{self.first}-"
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class FaultSpec:
    """A fault rule as a user writes it, before the stack resolves its target."""

    target: str
    kind: str
    attempts: Attempts = field(default_factory=Attempts)
    execution: str | None = None
    record: str | None = None
    percent: float = 100.0
    seed: int | None = None
    duration_seconds: float | None = None
    error: str | None = None
    cause: str | None = None
    delay_ms: int | None = None
    status: int | None = None
    run_handler: bool = False  # http-response only: the handler runs, then its answer is replaced

    def __post_init__(self) -> None:
        where = f"fault {self.target}:{self.kind}"
        if self.kind not in KINDS:
            raise UsageError(f"{where}: the kind is not one of {', '.join(KINDS)}")
        if self.kind in KINDS_WITH_DELAY and not (self.delay_ms and self.delay_ms > 0):
            raise UsageError(f"{where}: needs a delay in milliseconds (--delay-ms, or {self.kind}=MS)")
        if self.delay_ms is not None and self.delay_ms < 0:
            raise UsageError(f"{where}: the delay must not be negative")
        if self.seed is not None and self.seed < 0:
            raise UsageError(f"{where}: the seed must not be negative")
        if self.status is not None and not 100 <= self.status <= 599:
            raise UsageError(f"{where}: the status must be an HTTP status code (100-599)")
        if self.kind == "http-response" and not (self.status and 100 <= self.status <= 599):
            raise UsageError(f"{where}: needs an HTTP status code (--status, or http-response=STATUS)")
        if self.run_handler and self.kind != "http-response":
            raise UsageError(
                f"{where}: only http-response can run the handler first (error-after does for errors)"
            )
        if not 0 < self.percent <= 100:
            raise UsageError(f"{where}: the percentage must be above 0 and at most 100")
        if self.duration_seconds is not None and self.duration_seconds <= 0:
            raise UsageError(f"{where}: the duration must be positive")

    @classmethod
    def parse_flag(cls, text: str, **scope: Any) -> FaultSpec:
        """``TARGET:KIND[:ATTEMPTS]``, KIND optionally ``delay=MS`` / ``http-response=STATUS``."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise UsageError(
                f"--fault {text!r}: expected TARGET:KIND[:ATTEMPTS], e.g. ChargePayment:error:1-2"
            )
        kind, _, value = parts[1].partition("=")
        number: dict[str, Any] = {}
        if value:
            if not value.isdigit():
                raise UsageError(f"--fault {text!r}: {value!r} is not a whole number")
            number = {"status": int(value)} if kind == "http-response" else {"delay_ms": int(value)}
        attempts = Attempts.parse(parts[2]) if len(parts) == 3 else Attempts()
        return cls(target=parts[0], kind=kind, attempts=attempts, **number, **scope)

    def to_json(self) -> dict[str, Any]:
        """The plan-file form (camelCase, defaults left out)."""
        doc: dict[str, Any] = {"target": self.target, "kind": self.kind, "attempts": str(self.attempts)}
        optional = {
            "execution": self.execution,
            "record": self.record,
            "percent": None if self.percent == 100 else self.percent,
            "seed": self.seed,
            "durationSeconds": self.duration_seconds,
            "error": self.error,
            "cause": self.cause,
            "delayMs": self.delay_ms,
            "status": self.status,
            "runHandler": self.run_handler or None,
        }
        return doc | {key: value for key, value in optional.items() if value is not None}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> FaultSpec:
        """One rule of a plan file; UsageError names the rule and the field."""
        if not isinstance(doc, dict):
            raise UsageError(f"{where}: a rule is a mapping with target and kind, not {doc!r}")
        known = {"target", "kind", "attempts", *_PLAN_FIELDS}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise UsageError(
                f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if not isinstance(doc.get("target"), str) or not isinstance(doc.get("kind"), str):
            raise UsageError(f"{where}: target and kind are required strings")
        values: dict[str, Any] = {}
        for name, (attribute, kind) in _PLAN_FIELDS.items():
            if name in doc and doc[name] is not None:
                value = doc[name]
                if kind is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                    raise UsageError(f"{where}: {name} must be a {kind.__name__}, not {value!r}")
                values[attribute] = value
        try:
            attempts = Attempts.parse("all" if doc.get("attempts") is None else str(doc["attempts"]))
            return cls(target=doc["target"], kind=doc["kind"], attempts=attempts, **values)
        except UsageError as error:
            raise UsageError(f"{where}: {error}", hint=error.hint) from None


_PLAN_FIELDS: dict[str, tuple[str, type]] = {
    "execution": ("execution", str),
    "record": ("record", str),
    "percent": ("percent", float),
    "seed": ("seed", int),
    "durationSeconds": ("duration_seconds", float),
    "error": ("error", str),
    "cause": ("cause", str),
    "delayMs": ("delay_ms", int),
    "status": ("status", int),
    "runHandler": ("run_handler", bool),
}


def read_plan(path: Path) -> list[FaultSpec]:
    """The rules of a fault plan file (YAML or JSON): a list, or ``{faults: [...]}``."""
    doc = read_document(path, "fault plan")
    rules = doc.get("faults") if isinstance(doc, dict) else doc
    if not isinstance(rules, list) or not rules:
        raise UsageError(
            f"the fault plan {path} holds no rules", hint="write `faults: [{target: ..., kind: ...}]`"
        )
    return [FaultSpec.from_json(rule, f"{path.name}, rule {index + 1}") for index, rule in enumerate(rules)]


def fault_targets(definition: dict[str, Any]) -> list[str]:
    """The Task states of a definition that invoke a Lambda function (where faults land)."""
    return [
        name
        for name, state in state_definitions(definition).items()
        if state.get("Type") == "Task" and _invokes_lambda(state)
    ]


def _invokes_lambda(state: dict[str, Any]) -> bool:
    """A Lambda task: the optimized integration, or a function's ARN as the resource (also before
    its definition's substitutions are resolved)."""
    resource = str(state.get("Resource", ""))
    return (
        "states:::lambda:invoke" in resource
        or ":function:" in resource
        or function_of_state(state) is not None
    )


@dataclass(frozen=True)
class StackTargets:
    """What rules can target in a stack: its states, functions and stream mappings."""

    states: frozenset[str]
    functions: dict[str, str]  # logical id -> function name
    mappings: dict[str, str]  # logical id -> mapping UUID

    @classmethod
    def of_stack(cls, stack: LocalStack, region: str, stack_name: str) -> StackTargets:
        cfn = stack.client("cloudformation", region)
        sfn = stack.client("stepfunctions", region)
        functions: dict[str, str] = {}
        mappings: dict[str, str] = {}
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for resource in page["StackResourceSummaries"]:
                physical = resource.get("PhysicalResourceId") or ""
                if resource["ResourceType"] in FUNCTION_TYPES:
                    functions[resource["LogicalResourceId"]] = physical
                elif resource["ResourceType"] == MAPPING_TYPE:
                    mappings[resource["LogicalResourceId"]] = physical
        states: set[str] = set()
        for machine in state_machines(stack, region, stack_name):
            definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine.arn)["definition"])
            states.update(fault_targets(definition))
        return cls(frozenset(states), functions, mappings)

    def resolve(self, target: str) -> dict[str, str]:
        """The engine's form of a target: ``{"state"|"function"|"mapping": NAME}``."""
        if target in self.states:
            return {"state": target}
        if target in self.functions:
            return {"function": self.functions[target]}
        if target in self.functions.values():
            return {"function": target}
        if target in self.mappings:
            return {"mapping": self.mappings[target]}
        if target in self.mappings.values():
            return {"mapping": target}
        known = [
            ("Lambda task states", sorted(self.states)),
            ("functions", sorted(self.functions)),
            ("stream mappings", sorted(self.mappings)),
        ]
        listed = "; ".join(f"{label}: {', '.join(names)}" for label, names in known if names)
        raise UnknownFaultTargetError(
            f"the stack has no Task state, function or stream mapping named {target!r}",
            hint=listed or "the stack has no Task state, function or stream mapping",
        )

    def engine_rule(self, spec: FaultSpec) -> dict[str, Any]:
        """The rule as the engine's ``/_sandbox/faults`` route takes it."""
        target = self.resolve(spec.target)
        if spec.kind in STREAM_KINDS and "state" in target:
            raise UsageError(
                f"fault {spec.target}:{spec.kind}: {spec.kind} applies to a stream mapping or its function",
                hint=f"stream mappings: {', '.join(sorted(self.mappings)) or 'none in this stack'}",
            )
        rule: dict[str, Any] = {
            "target": target,
            "label": spec.target,
            "kind": spec.kind,
            "attempts": [spec.attempts.first, spec.attempts.last],
            "percent": spec.percent,
        }
        optional = {
            "execution": spec.execution,
            "record": spec.record,
            "seed": spec.seed,
            "durationSeconds": spec.duration_seconds,
            "error": spec.error,
            "cause": spec.cause,
            "delayMs": spec.delay_ms,
            "status": spec.status,
            "runHandler": spec.run_handler or None,
        }
        return rule | {key: value for key, value in optional.items() if value is not None}


class FaultBook:
    """The engine's fault rules, over its ``/_sandbox/faults`` route."""

    def __init__(self, endpoint_url: str, *, engine: str = "embedded") -> None:
        self.url = endpoint_url.rstrip("/") + ROUTE
        self.engine = engine

    def _call(self, method: str, path: str = "", body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            answer = _json_or_none(error.read())
            message = answer.get("message") if isinstance(answer, dict) else None
            if error.code == 404 and message is None:
                raise FaultsUnsupportedError(
                    f"the {self.engine} engine has no fault hook: fault rules run on the sandbox's own engine",
                    hint="`sandbox up --engine embedded` (or ministack); for AWS, `sandbox faults export --fis`",
                ) from error
            if error.code == 400:
                raise UsageError(f"the engine refused the fault rule: {message}") from error
            raise SandboxError(f"the engine's fault route answered {error.code}: {message}") from error
        except (urllib.error.URLError, OSError) as error:
            raise SandboxError(
                f"cannot reach the engine at {self.url}: {error}", hint="run `sandbox up` first"
            ) from error

    def add(self, rules: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(self._call("POST", body={"rules": list(rules)})["rules"])

    def listed(self) -> list[dict[str, Any]]:
        return list(self._call("GET")["rules"])

    def late_invocations(self) -> int:
        """Invocations a timeout rule still holds (they complete after their caller gave up)."""
        return int(self._call("GET").get("lateInvocations") or 0)

    def clear(self, rule_id: str | None = None) -> int:
        """Remove one rule or all; how many went. An unknown id is a UsageError."""
        try:
            return int(self._call("DELETE", f"/{rule_id}" if rule_id else "")["cleared"])
        except SandboxError as error:
            if rule_id and "no fault rule" in str(error):
                raise UsageError(
                    f"there is no fault rule {rule_id}", hint="list them with `sandbox faults list`"
                ) from error
            raise

    def clear_rules(self, rule_ids: list[str]) -> int:
        """Remove these rules (those already gone are skipped); how many went."""
        return int(self._call("POST", "/clear", body={"ids": rule_ids})["cleared"]) if rule_ids else 0

    def injections(self, execution: str | None = None) -> list[dict[str, Any]]:
        query = f"?execution={urllib.parse.quote(execution)}" if execution else ""
        return list(self._call("GET", f"/injections{query}")["injections"])


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def fault_book(stack: LocalStack) -> FaultBook:
    """The fault rules of the engine a stack runs on."""
    return FaultBook(stack.engine.endpoint_url, engine=stack.engine.engine)


def add_faults(
    stack: LocalStack, region: str, stack_name: str, specs: list[FaultSpec]
) -> list[dict[str, Any]]:
    """Resolve every rule against the stack, then set them all on its engine (all or none)."""
    targets = StackTargets.of_stack(stack, region, stack_name)
    return fault_book(stack).add([targets.engine_rule(spec) for spec in specs])


def spec_of_rule(rule: dict[str, Any]) -> FaultSpec:
    """The user's form of a rule the engine lists (its target as the user named it)."""
    first, last = rule["attempts"]
    return FaultSpec(
        target=rule["label"], kind=rule["kind"], attempts=Attempts(first, last), execution=rule.get("execution"),
        record=rule.get("record"), percent=float(rule.get("percent", 100)), seed=rule.get("seed"),
        duration_seconds=rule.get("expiresInSeconds") or None, error=rule.get("error"), cause=rule.get("cause"),
        delay_ms=rule.get("delayMs") or None, status=rule.get("status"), run_handler=bool(rule.get("runHandler")),
    )  # fmt: skip


def scoped(specs: Iterable[FaultSpec], execution: str) -> list[FaultSpec]:
    """The rules, each scoped to one execution by name."""
    return [replace(spec, execution=execution) for spec in specs]


@contextmanager
def faults_for_execution(
    stack: LocalStack, region: str, stack_name: str, specs: list[FaultSpec], name: str | None, *, prefix: str
) -> Iterator[str | None]:
    """The execution's name (a new ``PREFIX-…`` one when rules need it), its rules set for the block.

    The rules go after it; what the engine injected stays listed, for the execution's trace.
    """
    if not specs:
        yield name
        return
    name = name or f"{prefix}-{uuid.uuid4().hex[:12]}"
    added = add_faults(stack, region, stack_name, scoped(specs, name))
    try:
        yield name
    finally:
        fault_book(stack).clear_rules([rule["id"] for rule in added])


def describe_rule(rule: dict[str, Any]) -> str:
    """One line for a rule as the engine lists it."""
    first, last = rule["attempts"]
    attempts = str(Attempts(first, last))
    parts = [f"{rule['id']}: {rule['kind']}"]
    if rule.get("delayMs"):
        parts.append(f"{rule['delayMs']} ms")
    if rule.get("status"):
        parts.append(f"status {rule['status']}")
    parts.append(f"on {rule['label']}")
    if attempts != "all":
        parts.append(f"attempts {attempts}")
    if rule.get("execution"):
        parts.append(f"execution {rule['execution']}")
    if rule.get("record"):
        parts.append(f"records with {rule['record']}")
    if rule.get("percent", 100) < 100:
        parts.append(f"{rule['percent']:g}% (seed {rule.get('seed')})")
    if rule.get("error"):
        parts.append(f"as {rule['error']}")
    if rule.get("expiresInSeconds") is not None:
        parts.append(f"for {rule['expiresInSeconds']:.0f} s more")
    return " ".join(parts)
