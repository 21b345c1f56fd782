"""Chaos for any saga: many executions of a state machine under random faults at the invoke boundary.

The run draws, for a share of its executions, one fault over the state machine's Lambda tasks
(every kind a task can take: ``error``, ``error-after``, ``throttle``, ``delay``, ``timeout``;
permanent only on a step that a Catch moves on from whatever the error, transient elsewhere),
scoped to that execution, sets every rule in one request, starts the executions from concurrent
clients and waits until each has ended. It then judges the run with checks that need no user code:

- every execution ended;
- after each Catch, the states that ran are a path the failure map predicts (``sandbox saga map``);
- each injected fault shows in the history where it was injected (the attempt it broke failed
  with the injected error, or timed out, or ran late);

and with the user's own invariants: ``module:function`` callables that get a ``ChaosContext`` (the
stack's clients and outputs, every execution with its input, outcome and faults) and return the
violations they found, one readable line each. The library knows nothing of any domain.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError, UsageError
from sandbox.executions import TERMINAL_STATUSES, StateMachineRef, history_of
from sandbox.fault_kinds import SAGA_CHAOS_KINDS
from sandbox.faults import Attempts, FaultSpec, StackTargets, fault_book, fault_targets, scoped
from sandbox.saga_map import SagaMap, build_saga_map
from sandbox.stack import LocalStack
from sandbox.trace.execution import (
    ExecutionTrace,
    build_execution_trace,
    state_definitions,
)
from sandbox.waiting import wait_until

CHAOS_KINDS = SAGA_CHAOS_KINDS
# How often each kind is drawn: the ones that exercise Catch and Retry most, most often; a
# timeout holds an execution for its task's TimeoutSeconds, so it is drawn least.
KIND_WEIGHTS = {"error": 3.0, "error-after": 3.0, "throttle": 1.5, "delay": 1.5, "timeout": 1.0}
RETRIED_ERROR = "Lambda.ServiceException"  # what a transient Lambda failure is called: Retry policies name it
DEFAULT_ERRORS = {
    "error": "InjectedFault",
    "error-after": "InjectedFault",
    "throttle": "Lambda.TooManyRequestsException",
}
POLL_SECONDS = 0.25

Invariant = Callable[["ChaosContext"], Iterable[str]]


@dataclass(frozen=True)
class SagaChaosConfig:
    """What a chaos run of a state machine does."""

    executions: int = 200
    concurrency: int = 8
    seed: int = 1
    kinds: tuple[str, ...] = CHAOS_KINDS
    fault_share: float = 0.6  # of the executions, those given a fault
    wait_seconds: float = 600.0

    def validate(self) -> None:
        if self.executions < 1:
            raise UsageError("--executions must be at least 1")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        unknown = sorted(set(self.kinds) - set(CHAOS_KINDS))
        if unknown:
            raise UsageError(
                f"--kinds: unknown {', '.join(unknown)}", hint=f"choose from {', '.join(CHAOS_KINDS)}"
            )
        if not 0 <= self.fault_share <= 1:
            raise UsageError("--fault-share must be between 0 and 1")


@dataclass(frozen=True)
class PlannedExecution:
    """One execution of the run: its name, input and the faults it is given."""

    index: int
    name: str
    input: Any
    faults: tuple[FaultSpec, ...] = ()


@dataclass(frozen=True)
class ChaosExecution:
    """How one execution of the run went, for the checks and the user's invariants."""

    name: str
    arn: str
    input: Any
    status: str
    output: Any
    error: str | None
    cause: str | None
    states: tuple[str, ...]  # entered, in order
    faults: tuple[FaultSpec, ...]  # planned
    injected: tuple[dict[str, Any], ...]  # what the engine injected (rule, kind, state, attempt, error)
    trace: ExecutionTrace

    @property
    def is_succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "states": list(self.states),
            "faults": [spec.to_json() for spec in self.faults],
            "injected": list(self.injected),
        }


@dataclass(frozen=True)
class ChaosContext:
    """What a user's invariant gets: the stack's clients and outputs, and every execution of the run."""

    stack: LocalStack
    region: str
    outputs: dict[str, str]
    executions: tuple[ChaosExecution, ...]

    def client(self, service: str) -> Any:
        """A boto3 client of the local engine (dummy credentials, the stack's region)."""
        return self.stack.client(service, self.region)


@dataclass(frozen=True)
class ChaosCheck:
    """One check of the run: its name, and the violations it found (none: it held)."""

    name: str
    violations: tuple[str, ...] = ()

    @property
    def is_held(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "held": self.is_held, "violations": list(self.violations)}


@dataclass(frozen=True)
class SagaChaosReport:
    """A chaos run of a state machine: what was planned, how the executions ended, what held."""

    config: SagaChaosConfig
    run_id: str
    state_machine: str
    executions: tuple[ChaosExecution, ...]
    checks: tuple[ChaosCheck, ...]
    elapsed_seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_held(self) -> bool:
        return all(check.is_held for check in self.checks)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for execution in self.executions:
            found[execution.status] = found.get(execution.status, 0) + 1
        return found

    def injected_by_kind(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for execution in self.executions:
            for entry in execution.injected:
                found[entry["kind"]] = found.get(entry["kind"], 0) + 1
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "stateMachine": self.state_machine,
            "run": {
                "executions": self.config.executions,
                "concurrency": self.config.concurrency,
                "seed": self.config.seed,
                "kinds": list(self.config.kinds),
                "faultShare": self.config.fault_share,
            },
            "statuses": self.counts(),
            "planned": sum(1 for e in self.executions if e.faults),
            "injected": self.injected_by_kind(),
            "elapsedSeconds": round(self.elapsed_seconds, 2),
            "executionsPerSecond": round(len(self.executions) / self.elapsed_seconds, 2)
            if self.elapsed_seconds
            else None,
            "held": self.is_held,
            "checks": [check.to_json() for check in self.checks],
            "notes": list(self.notes),
            "rerun": self.rerun_command(),
        }

    def rerun_command(self) -> str:
        config = self.config
        return (
            f"sandbox chaos {self.state_machine} --executions {config.executions} --concurrency "
            f"{config.concurrency} --seed {config.seed} --kinds {','.join(config.kinds)} "
            f"--fault-share {config.fault_share:g}"
        )


# ------------------------------------------------------------------ inputs and invariants


def _import_callable(spec: str, what: str, search: Sequence[Path]) -> Callable[..., Any]:
    """``module:function``, imported with the project's folders on the import path."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise UsageError(f"{what} {spec!r}: expected module:function (e.g. tests.chaos:invariants)")
    for folder in reversed(search):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"{what} {spec!r}: cannot import {module_name}: {error}") from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UsageError(f"{what} {spec!r}: {module_name} has no function {function_name}")
    return function  # type: ignore[no-any-return]


def read_inputs(
    source: str, search: Sequence[Path], context: ChaosContext | None = None
) -> Callable[[int], Any]:
    """Execution inputs: a JSON-lines file (its lines in turn), or ``module:function`` called with the
    index (and the ``ChaosContext``, when it takes two arguments: inputs that need records first)."""
    path = Path(source)
    if path.suffix in (".jsonl", ".json", ".ndjson") or path.is_file():
        try:
            lines = [line for line in path.read_text().splitlines() if line.strip()]
        except OSError as error:
            raise UsageError(f"--inputs {source}: cannot read it: {error.strerror or error}") from error
        inputs = []
        for number, line in enumerate(lines, start=1):
            try:
                inputs.append(json.loads(line))
            except ValueError as error:
                raise UsageError(f"--inputs {source}, line {number}: not JSON: {error}") from error
        if not inputs:
            raise UsageError(f"--inputs {source}: no input in it (one JSON document per line)")
        return lambda index: inputs[index % len(inputs)]
    return bind_inputs(_import_callable(source, "--inputs", search), context)


def bind_inputs(function: Callable[..., Any], context: ChaosContext | None) -> Callable[[int], Any]:
    """Inputs by index: ``function(index)``, or ``function(index, context)`` when it takes two."""
    if len(inspect.signature(function).parameters) >= 2:
        return lambda index: function(index, context)
    return lambda index: function(index)


def load_invariants(specs: Sequence[str], search: Sequence[Path]) -> list[tuple[str, Invariant]]:
    return [(spec, _import_callable(spec, "--invariants", search)) for spec in specs]


# ------------------------------------------------------------------ plan


def _draw_fault(state: str, kind: str, is_transient_only: bool, rng: random.Random) -> FaultSpec:
    """One fault: one its Retry can get through when ``is_transient_only``, else possibly permanent."""
    if kind == "delay":
        return FaultSpec(state, kind, Attempts(), delay_ms=rng.randint(50, 400))
    if kind == "timeout":
        return FaultSpec(state, kind, Attempts(1, 1))
    if is_transient_only:
        return FaultSpec(state, kind, rng.choice([Attempts(1, 1), Attempts(1, 2)]),
                         error=None if kind == "throttle" else RETRIED_ERROR)  # fmt: skip
    attempts = rng.choice([Attempts(1, 1), Attempts(1, 2), Attempts()])
    error = RETRIED_ERROR if kind != "throttle" and rng.random() < 0.5 else None
    return FaultSpec(state, kind, attempts, error=error)


def plan_saga_chaos(
    definition: dict[str, Any], inputs: Callable[[int], Any], config: SagaChaosConfig, run_id: str
) -> list[PlannedExecution]:
    """The run's executions: the same seed gives the same inputs and faults."""
    config.validate()
    targets = fault_targets(definition)
    if not targets and config.fault_share > 0:
        raise UsageError("the state machine has no Task that invokes a Lambda function: nothing to break")
    # A step may fail for good only where the saga claims to handle it: a Catch on every error
    # moves it on. A compensation must finish in the end, and a step with no catch-all has nowhere
    # to go (`sandbox saga map` already reports that): both get faults their Retry gets through.
    permanent = {
        step.state
        for step in build_saga_map(definition).steps
        if step.is_caught_all and step.role != "compensation"
    }
    rng = random.Random(config.seed)
    kinds = list(config.kinds)
    weights = [KIND_WEIGHTS[kind] for kind in kinds]
    planned = []
    for index in range(config.executions):
        faults: tuple[FaultSpec, ...] = ()
        if kinds and rng.random() < config.fault_share:
            state, kind = rng.choice(targets), rng.choices(kinds, weights)[0]
            faults = (_draw_fault(state, kind, state not in permanent, rng),)
        planned.append(PlannedExecution(index, f"chaos-{run_id}-{index:05d}", inputs(index), faults))
    return planned


# ------------------------------------------------------------------ run


def run_saga_chaos(
    stack: LocalStack,
    region: str,
    machine: StateMachineRef,
    definition: dict[str, Any],
    plan: list[PlannedExecution],
    config: SagaChaosConfig,
    invariants: Sequence[tuple[str, Invariant]] = (),
    on_progress: Callable[[str, int, int], None] = lambda _stage, _done, _total: None,
) -> SagaChaosReport:
    """Set the plan's rules, run its executions concurrently, wait for every one, and judge the run."""
    sfn = stack.client("stepfunctions", region)
    book = fault_book(stack)
    specs = [spec for planned in plan for spec in scoped(planned.faults, planned.name)]
    rule_ids: list[str] = []
    if specs:
        targets = StackTargets.of_stack(stack, region, stack.name)
        rule_ids = [rule["id"] for rule in book.add(targets.engine_rule(spec) for spec in specs)]
    started_at = time.monotonic()
    arns: dict[str, str] = {}
    try:

        def start(planned: PlannedExecution) -> None:
            response = sfn.start_execution(
                stateMachineArn=machine.arn, name=planned.name, input=json.dumps(planned.input)
            )
            arns[planned.name] = response["executionArn"]
            on_progress("starting", len(arns), len(plan))

        with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="chaos-start") as pool:
            list(pool.map(start, plan))

        def ended() -> bool:
            # One listing of the machine's running executions per poll, not a describe of each.
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=machine.arn, statusFilter="RUNNING"
            )
            running = sum(1 for page in pages for entry in page["executions"] if entry["name"] in arns)
            on_progress("running", len(plan) - running, len(plan))
            return running == 0

        with contextlib.suppress(SandboxError):  # the `ended` check names the executions still running
            wait_until(ended, timeout=config.wait_seconds, what=f"the {len(plan)} executions of the run to end",
                       interval=POLL_SECONDS, max_interval=1.0)  # fmt: skip
            # Quiet: the attempts a timeout rule held have landed too, before anything is judged.
            on_progress("settling", len(plan), len(plan))
            wait_until(lambda: book.late_invocations() == 0, timeout=config.wait_seconds,
                       what="the late attempts of timed-out tasks to land", interval=POLL_SECONDS)  # fmt: skip
        elapsed = time.monotonic() - started_at
        injections: dict[str, list[dict[str, Any]]] = {}
        for entry in book.injections():
            if entry.get("execution") in arns:
                injections.setdefault(str(entry["execution"]), []).append(entry)
        executions = [
            _read_execution(
                sfn, machine, definition, planned, arns[planned.name], injections.get(planned.name, [])
            )
            for planned in plan
        ]
    finally:
        book.clear_rules(rule_ids)
    on_progress("checking", len(plan), len(plan))
    context = ChaosContext(stack, region, dict(stack.outputs), tuple(executions))
    checks = [
        check_ended(executions),
        check_failure_paths(build_saga_map(definition), executions),
        check_injections(executions, definition),
        *[check_invariant(name, invariant, context) for name, invariant in invariants],
    ]
    return SagaChaosReport(
        config,
        plan[0].name.rsplit("-", 1)[0] if plan else "",
        machine.label,
        tuple(executions),
        tuple(checks),
        elapsed,
    )


def _read_execution(
    sfn: Any,
    machine: StateMachineRef,
    definition: dict[str, Any],
    planned: PlannedExecution,
    arn: str,
    injected: list[dict[str, Any]],
) -> ChaosExecution:
    described = dict(sfn.describe_execution(executionArn=arn))
    history = history_of(sfn, arn) if described["status"] in TERMINAL_STATUSES else []
    trace = build_execution_trace(described, history, state_machine=machine.label, definition=definition)
    return ChaosExecution(
        name=planned.name,
        arn=arn,
        input=planned.input,
        status=str(described["status"]),
        output=trace.output,
        error=trace.error,
        cause=trace.cause,
        states=tuple(state.name for state in trace.states),
        faults=planned.faults,
        injected=tuple(injected),
        trace=trace,
    )


# ------------------------------------------------------------------ checks

ENDED = "every execution ended"
PATHS = "after each Catch, a path the failure map predicts ran"
INJECTED = "each injected fault shows in the history where it was injected"


def check_ended(executions: Sequence[ChaosExecution]) -> ChaosCheck:
    return ChaosCheck(
        ENDED, tuple(f"{e.name}: still {e.status}" for e in executions if e.status not in TERMINAL_STATUSES)
    )


def check_failure_paths(saga: SagaMap, executions: Sequence[ChaosExecution]) -> ChaosCheck:
    """After each Catch, the top-level states that ran (to the next Catch or the end) start a predicted path."""
    wrong = []
    for execution in executions:
        top = [state for state in execution.trace.states if state.depth == 0]
        for index, state in enumerate(top):
            if state.catch is None:
                continue
            try:
                step = saga.step(state.name)
            except KeyError:
                continue
            routes = [route for route in step.catches if route.next == state.catch.next and route.via is None]
            if not routes:
                continue
            ran: list[str] = []
            for later in top[index + 1 :]:
                ran.append(later.name)
                if later.catch is not None:
                    break
            predicted = [path.states for route in routes for path in route.paths]
            if not any(tuple(ran) == path[: len(ran)] for path in predicted):
                shown = " | ".join(" → ".join(path) for path in predicted)
                wrong.append(
                    f"{execution.name}: after {state.name}'s Catch ran {' → '.join(ran) or 'nothing'}; "
                    f"the map predicts {shown}"
                )
    return ChaosCheck(PATHS, tuple(wrong))


def check_injections(executions: Sequence[ChaosExecution], definition: dict[str, Any]) -> ChaosCheck:
    """Each injection is in the history: the attempt it broke exists and failed as the fault says."""
    states = state_definitions(definition)
    wrong = []
    for execution in executions:
        visits = [state for state in execution.trace.states if state.attempts]
        for entry in execution.injected:
            name, number, kind = entry.get("state"), int(entry.get("attempt") or 0), entry["kind"]
            attempts = [
                a for visit in visits if visit.name == name for a in visit.attempts if a.number == number
            ]
            if not attempts:
                wrong.append(
                    f"{execution.name}: {kind} injected into {name} attempt {number}, which the history lacks"
                )
                continue
            attempt = attempts[-1]
            expected = _expected_error(entry, states.get(str(name)) or {})
            if expected is not None and attempt.error != expected:
                wrong.append(
                    f"{execution.name}: {kind} injected into {name} attempt {number}, which ended "
                    f"{attempt.error or attempt.status}, not {expected}"
                )
    return ChaosCheck(INJECTED, tuple(wrong))


def _expected_error(entry: dict[str, Any], state: dict[str, Any]) -> str | None:
    kind = entry["kind"]
    if kind == "timeout":
        return "States.Timeout" if state.get("TimeoutSeconds") else "Sandbox.Timedout"
    if kind in DEFAULT_ERRORS:
        return str(entry.get("error") or DEFAULT_ERRORS[kind])
    return None  # a delay breaks nothing: the attempt only ran late


def check_invariant(name: str, invariant: Invariant, context: ChaosContext) -> ChaosCheck:
    """A user's invariant: the violations it returns (an exception in it is one too)."""
    try:
        found = tuple(str(violation) for violation in invariant(context) or ())
    except Exception as error:  # the user's code: its failure is the check's answer
        found = (f"the invariant raised {type(error).__name__}: {error}",)
    return ChaosCheck(f"invariant {name}", found)


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]
