"""A saga's failure map, read from its state machine's definition alone (no engine, no history).

For each Task state: its Retry rules, its Catch routes, every path of states a Catch leads to (each
branch of a Choice, bounded so that a loop ends a path), how that path ends, and which earlier
steps it undoes. Then the findings a reviewer asks about: an effect left in place on a failure
path, a compensation of a step that never ran, a Catch that ends in success, a step with no Catch.

The words it uses:

- the **happy path** runs from StartAt along Next; a Choice takes the first of its Default, then
  its Choices, from which a Succeed or End can be reached; a Parallel or Map runs each branch's
  own happy path, in order;
- an **effect step** is a Task on the happy path; a **compensation** is a Task that only a Catch
  leads to; any other Task (off the happy path on another branch of a Choice) is ``other``;
- compensation C **undoes** step S when (1) both invoke the same Lambda function, each with its
  own ``action`` parameter, else (2) C's name is an undo verb plus S's noun (``ChargePayment`` /
  ``RefundPayment``, ``BookHotel`` / ``CancelHotel``) or plus S's whole name (``UndoChargeCard``);
  otherwise it is not known. It is a heuristic: each pairing says why it was made.
- the steps **earlier** than an effect step are the effect steps before it on the happy path, and
  those in another branch of a Parallel it runs in (they run alongside it, so they may have run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import UsageError
from sandbox.trace.execution import function_of_state, state_definitions

# The words a compensation's name starts with, lower case ("RollBack" reads as one word).
UNDO_VERBS = frozenset({"release", "cancel", "refund", "undo", "compensate", "revert", "rollback"})
# The Payload keys that say what a multi-purpose function does (`{"action": "reserve"}`).
ACTION_KEYS = ("action", "operation")
# Errors that leave it unknown whether the failed step's effect landed (a timeout, a lost response).
UNCERTAIN_ERRORS = frozenset({"States.ALL", "States.Timeout", "States.TaskFailed"})
# Bounds on the paths followed after a failure: a Choice may fork many times, or loop.
MAX_PATHS = 32
RETRY_DEFAULTS = {"IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}


class DefinitionError(UsageError):
    """A state machine definition that cannot be read, or is not one."""


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class RetryRule:
    """One Retry entry, with Step Functions' defaults filled in where the definition leaves them out."""

    error_equals: tuple[str, ...]
    max_attempts: int
    interval_seconds: float
    backoff_rate: float
    max_delay_seconds: float | None = None
    jitter_strategy: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "errorEquals": list(self.error_equals),
            "maxAttempts": self.max_attempts,
            "intervalSeconds": self.interval_seconds,
            "backoffRate": self.backoff_rate,
            "maxDelaySeconds": self.max_delay_seconds,
            "jitterStrategy": self.jitter_strategy,
        }


@dataclass(frozen=True)
class Pairing:
    """Compensation ``compensation`` undoes step ``step``, and why the map thinks so."""

    compensation: str
    step: str
    reason: str  # "same function, action release" or "name"

    def to_json(self) -> dict[str, Any]:
        return {"compensation": self.compensation, "step": self.step, "reason": self.reason}


@dataclass(frozen=True)
class FailurePath:
    """One way a failure can go on: the states that run, where it ends, what it undoes."""

    states: tuple[str, ...]  # in order, the terminal state included
    terminal: str  # the Fail or Succeed state, or the last state (End); for a loop the state met again
    ends_in: str  # "fail", "success" or "loop"
    undoes: tuple[Pairing, ...] = ()  # the compensations on the path, in the order they run
    leaves: tuple[str, ...] = ()  # the failed step's earlier effect steps that nothing undoes here

    @property
    def is_swallowed(self) -> bool:
        return self.ends_in == "success"

    def to_json(self) -> dict[str, Any]:
        return {
            "states": list(self.states),
            "terminal": self.terminal,
            "endsIn": self.ends_in,
            "undoes": [pairing.to_json() for pairing in self.undoes],
            "leavesInPlace": list(self.leaves),
        }


@dataclass(frozen=True)
class CatchRoute:
    """A Catch entry of the step (or, ``via``, of the Parallel or Map the step runs in) and its paths."""

    error_equals: tuple[str, ...]
    next: str
    paths: tuple[FailurePath, ...]
    via: str | None = None  # the container whose Catch this is; None for the step's own

    def to_json(self) -> dict[str, Any]:
        return {
            "errorEquals": list(self.error_equals),
            "next": self.next,
            "via": self.via,
            "paths": [path.to_json() for path in self.paths],
        }


@dataclass(frozen=True)
class StepFailure:
    """What happens when one Task state fails."""

    state: str
    role: str  # "effect", "compensation" or "other"
    function: str | None
    action: str | None
    earlier: tuple[str, ...]  # effect steps that may have run before it (effect steps only)
    retries: tuple[RetryRule, ...]
    catches: tuple[CatchRoute, ...]
    is_caught_all: bool  # some Catch on the way out (its own or a container's) has States.ALL

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "role": self.role,
            "function": self.function,
            "action": self.action,
            "earlierEffects": list(self.earlier),
            "retry": [rule.to_json() for rule in self.retries],
            "catch": [route.to_json() for route in self.catches],
            "isCaughtAll": self.is_caught_all,
        }


@dataclass(frozen=True)
class Finding:
    """Something a reviewer would ask about: ``uncompensated``, ``compensates-unrun``, ``swallowed``, ``no-catch``."""

    kind: str
    state: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": self.state, "message": self.message}


@dataclass(frozen=True)
class SagaMap:
    """A state machine's failure map: its happy path, each Task's failure, and the findings."""

    start_at: str
    happy_path: tuple[str, ...]
    effect_steps: tuple[str, ...]
    pairings: tuple[Pairing, ...]
    steps: tuple[StepFailure, ...]
    findings: tuple[Finding, ...]

    def step(self, name: str) -> StepFailure:
        """The failure of the Task state ``name``."""
        for step in self.steps:
            if step.state == name:
                return step
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "startAt": self.start_at,
            "happyPath": list(self.happy_path),
            "effectSteps": list(self.effect_steps),
            "compensations": [pairing.to_json() for pairing in self.pairings],
            "steps": [step.to_json() for step in self.steps],
            "findings": [finding.to_json() for finding in self.findings],
        }


# ------------------------------------------------------------------ reading a definition


def load_definition(path: Path) -> dict[str, Any]:
    """A definition file (``.asl.json``, or ``.asl.yaml`` as SAM projects write them) as data."""
    try:
        text = path.read_text()
    except FileNotFoundError as error:
        raise DefinitionError(
            f"definition file not found: {path}", hint="give the path of an .asl.json or .asl.yaml file"
        ) from error
    except OSError as error:
        raise DefinitionError(f"cannot read {path}: {error.strerror}") from error
    if path.suffix in (".yaml", ".yml"):
        import yaml  # PyYAML: only where a YAML definition is read

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise DefinitionError(
                f"{path.name} is not valid YAML: {str(error).splitlines()[0]}", details=str(error)
            ) from error
    else:
        try:
            loaded = json.loads(text)
        except ValueError as error:
            raise DefinitionError(
                f"{path.name} is not valid JSON: {error}", hint="an .asl.yaml file is read as YAML"
            ) from error
    return check_definition(loaded, where=path.name)


def check_definition(definition: Any, *, where: str = "the definition") -> dict[str, Any]:
    """``definition`` when it is a state machine's (StartAt and States); a DefinitionError if not."""
    if (
        not isinstance(definition, dict)
        or not isinstance(definition.get("StartAt"), str)
        or not isinstance(definition.get("States"), dict)
    ):
        raise DefinitionError(
            f"{where} is not a state machine definition: it has no StartAt and States",
            hint="give an Amazon States Language document (the file DefinitionUri names)",
        )
    return definition


# ------------------------------------------------------------------ the analysis


def build_saga_map(definition: dict[str, Any]) -> SagaMap:
    """The failure map of a state machine's definition (ASL as data)."""
    return _Analysis(check_definition(definition)).saga_map()


def function_key(state: dict[str, Any]) -> str | None:
    """Which Lambda function a Task invokes, as written (a name, or a ``${Substitution}``); None if none."""
    name = function_of_state(state)
    if name:
        return name
    resource = str(state.get("Resource") or "")
    if resource.startswith("${"):  # `Resource: ${MyFunctionArn}` in a definition file
        return resource
    parameters = _arguments(state)
    if "states:::lambda:invoke" in resource and isinstance(parameters.get("FunctionName"), str):
        return str(parameters["FunctionName"]) or None
    return None


def action_of(state: dict[str, Any]) -> str | None:
    """The fixed ``action`` (or ``operation``) a Task passes its function; None when it passes none."""
    parameters = _arguments(state)
    payload = parameters.get("Payload") if "FunctionName" in parameters else parameters
    if not isinstance(payload, dict):
        return None
    for key in ACTION_KEYS:
        if isinstance(payload.get(key), str):
            return str(payload[key])
    return None


def name_words(name: str) -> list[str]:
    """A state's name as lower-case words: CamelCase, snake_case and kebab-case alike."""
    words = [word.lower() for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]
    if words[:2] == ["roll", "back"]:
        words[:2] = ["rollback"]
    return words


def name_undoes(compensation: str, step: str) -> bool:
    """Whether the names say so: an undo verb and the step's noun (or its whole name)."""
    undo, done = name_words(compensation), name_words(step)
    if len(undo) < 2 or len(done) < 2 or undo[0] not in UNDO_VERBS:
        return False
    return undo[1:] in (done[1:], done)


def _arguments(state: dict[str, Any]) -> dict[str, Any]:
    for key in ("Parameters", "Arguments"):
        if isinstance(state.get(key), dict):
            return dict(state[key])
    return {}


def _retry_rules(state: dict[str, Any]) -> tuple[RetryRule, ...]:
    rules = []
    for entry in state.get("Retry") or []:
        values = {**RETRY_DEFAULTS, **entry}
        rules.append(
            RetryRule(
                error_equals=tuple(str(error) for error in entry.get("ErrorEquals") or []),
                max_attempts=int(values["MaxAttempts"]),
                interval_seconds=float(values["IntervalSeconds"]),
                backoff_rate=float(values["BackoffRate"]),
                max_delay_seconds=entry.get("MaxDelaySeconds"),
                jitter_strategy=entry.get("JitterStrategy"),
            )
        )
    return tuple(rules)


def _catchers(state: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    return [
        (tuple(str(error) for error in entry.get("ErrorEquals") or []), str(entry.get("Next")))
        for entry in state.get("Catch") or []
        if isinstance(entry, dict) and entry.get("Next")
    ]


def _catches_all(state: dict[str, Any]) -> bool:
    return any("States.ALL" in errors for errors, _ in _catchers(state))


def _branches(state: dict[str, Any]) -> list[dict[str, Any]]:
    """A Parallel's branches, or a Map's one item processor."""
    if state.get("Type") == "Parallel":
        return [branch for branch in state.get("Branches") or [] if isinstance(branch, dict)]
    processor = state.get("ItemProcessor") or state.get("Iterator")
    return [processor] if state.get("Type") == "Map" and isinstance(processor, dict) else []


def _joined(names: Iterable[str]) -> str:
    return ", ".join(names)


@dataclass(frozen=True)
class _Path:
    states: tuple[str, ...]
    terminal: str
    ends_in: str

    def after(self, states: tuple[str, ...]) -> _Path:
        return _Path((*states, *self.states), self.terminal, self.ends_in)


class _Analysis:
    """The walks over one definition; every state is known by its name, nested ones too."""

    def __init__(self, definition: dict[str, Any]):
        self.start_at = str(definition["StartAt"])
        self.states = state_definitions(definition)
        # name -> its Parallel or Map (None at the top), and the (container, branch) chain it runs in
        self.container_of: dict[str, str | None] = {}
        self.branch_chain: dict[str, tuple[tuple[str, int], ...]] = {}
        self._index(definition, None, ())
        self.happy_path = tuple(self._happy_from(self.start_at))
        self.normal = self._reachable(follow_catch=False)
        tasks = [name for name, state in self.states.items() if state.get("Type") == "Task"]
        self.effects = tuple(name for name in self.happy_path if name in tasks)
        reachable = self._reachable(follow_catch=True)
        self.compensations = [name for name in tasks if name in reachable and name not in self.normal]
        self.others = [name for name in tasks if name not in self.effects and name not in self.compensations]
        found = [pairing for pairing in map(self._pairing, self.compensations) if pairing]
        order = [*self.effects, *self.others]
        found.sort(key=lambda pairing: order.index(pairing.step))  # in the order the steps run
        self.pairings = {pairing.compensation: pairing for pairing in found}

    def _index(
        self, machine: dict[str, Any], container: str | None, chain: tuple[tuple[str, int], ...]
    ) -> None:
        for name, state in (machine.get("States") or {}).items():
            if not isinstance(state, dict) or name in self.container_of:
                continue
            self.container_of[name] = container
            self.branch_chain[name] = chain
            for number, branch in enumerate(_branches(state)):
                self._index(branch, name, (*chain, (name, number)))

    # ---- walks along normal transitions

    def _targets(self, name: str) -> list[str]:
        """Where a state goes when it succeeds: its Next, or a Choice's Default then its Choices."""
        state = self.states.get(name) or {}
        if state.get("Type") == "Choice":
            targets = [state.get("Default"), *(choice.get("Next") for choice in state.get("Choices") or [])]
        else:
            targets = [state.get("Next")]
        found: list[str] = []
        for target in targets:
            if isinstance(target, str) and target in self.states and target not in found:
                found.append(target)
        return found

    def _reaches_success(self, start: str) -> bool:
        seen: set[str] = set()
        todo = [start]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            state = self.states[name]
            if state.get("Type") == "Succeed" or state.get("End"):
                return True
            todo += self._targets(name)
        return False

    def _happy_from(self, start: str) -> list[str]:
        path: list[str] = []
        name: str | None = start
        while name is not None and name in self.states and name not in path:
            path.append(name)
            state = self.states[name]
            for branch in _branches(state):
                if isinstance(branch.get("StartAt"), str):
                    path += self._happy_from(branch["StartAt"])
            targets = self._targets(name)
            if state.get("Type") == "Choice":
                name = next((target for target in targets if self._reaches_success(target)), None)
                name = name or (targets[0] if targets else None)
            else:
                name = targets[0] if targets else None
        return path

    def _reachable(self, *, follow_catch: bool) -> set[str]:
        seen: set[str] = set()
        todo = [self.start_at]
        while todo:
            name = todo.pop()
            if name in seen or name not in self.states:
                continue
            seen.add(name)
            state = self.states[name]
            todo += self._targets(name)
            todo += [str(branch.get("StartAt")) for branch in _branches(state)]
            if follow_catch:
                todo += [target for _, target in _catchers(state)]
        return seen

    # ---- walks after a failure

    def _inside(self, name: str) -> tuple[str, ...]:
        """The states a Parallel or Map runs, each branch's happy path in order (empty for others)."""
        inside: list[str] = []
        for branch in _branches(self.states[name]):
            if isinstance(branch.get("StartAt"), str):
                inside += self._happy_from(branch["StartAt"])
        return tuple(inside)

    def _run_from(self, name: str, seen: frozenset[str]) -> list[_Path]:
        """Every path of states that runs from ``name`` on, to the execution's end (or a loop)."""
        if name not in self.states:
            return [_Path((), name, "fail")]  # a Next to nowhere: the definition would not deploy
        if name in seen:
            return [_Path((), name, "loop")]
        seen = seen | {name}
        state = self.states[name]
        here = (name, *self._inside(name))
        if state.get("Type") == "Fail":
            tails = self._after_failure(name, seen)
        elif state.get("Type") == "Choice":
            tails = []
            for target in self._targets(name):
                if len(tails) >= MAX_PATHS:  # enough to review; Choices in a row would fork without end
                    break
                tails += self._run_from(target, seen)
            ending = [path for path in tails if path.ends_in != "loop"]
            tails = ending or tails  # a polling loop's way back is not a way the failure ends
        else:
            tails = self._after_success(name, seen)
        return [tail.after(here) for tail in tails[:MAX_PATHS]]

    def _after_success(self, name: str, seen: frozenset[str]) -> list[_Path]:
        state = self.states[name]
        targets = self._targets(name)
        if state.get("Type") != "Succeed" and targets:
            return self._run_from(targets[0], seen)
        container = self.container_of.get(name)
        if container is None:
            return [_Path((), name, "success")]
        return self._after_success(container, seen)  # the branch is done: its container goes on

    def _after_failure(self, name: str, seen: frozenset[str]) -> list[_Path]:
        container = self.container_of.get(name)
        if container is None:
            return [_Path((), name, "fail")]
        # The branch failed, so its container fails: the container's Catch decides what runs next.
        paths = [
            path for _, target in _catchers(self.states[container]) for path in self._run_from(target, seen)
        ]
        if not _catches_all(self.states[container]):
            paths += self._after_failure(container, seen)
        return paths[:MAX_PATHS]

    # ---- pairing compensations with steps

    def _pairing(self, compensation: str) -> Pairing | None:
        state = self.states[compensation]
        key, action = function_key(state), action_of(state)
        steps = [*self.effects, *self.others]
        if key and action:
            same = [
                step
                for step in steps
                if function_key(self.states[step]) == key
                and action_of(self.states[step]) not in (None, action)
            ]
            if len(same) > 1:  # one function, several steps: the name tells them apart
                same = [step for step in same if name_undoes(compensation, step)]
            if len(same) == 1:
                return Pairing(compensation, same[0], f"same function, action {action}")
        for step in steps:
            if name_undoes(compensation, step):
                return Pairing(compensation, step, "name")
        return None

    # ---- each step's failure

    def _is_alongside(self, one: str, other: str) -> bool:
        """Whether two states run in different branches of one Parallel (so either may run first)."""
        for (container, branch), (other_container, other_branch) in zip(
            self.branch_chain[one], self.branch_chain[other], strict=False
        ):
            if container != other_container:
                return False
            if branch != other_branch:
                return True
        return False

    def _earlier(self, name: str) -> tuple[str, ...]:
        if name not in self.effects:
            return ()
        position = self.effects.index(name)
        return tuple(
            step
            for number, step in enumerate(self.effects)
            if step != name and (number < position or self._is_alongside(step, name))
        )

    def _routes(self, name: str, earlier: tuple[str, ...]) -> tuple[list[CatchRoute], bool]:
        """The Catch routes of a failed Task: its own, then its containers' while none catches all."""
        routes: list[CatchRoute] = []
        owner: str | None = name
        while owner is not None:
            for errors, target in _catchers(self.states[owner]):
                paths = tuple(
                    self._failure_path(path, earlier) for path in self._run_from(target, frozenset({name}))
                )
                routes.append(CatchRoute(errors, target, paths, via=None if owner == name else owner))
            if _catches_all(self.states[owner]):
                return routes, True
            owner = self.container_of.get(owner)
        return routes, False

    def _failure_path(self, path: _Path, earlier: tuple[str, ...]) -> FailurePath:
        undoes = tuple(self.pairings[state] for state in path.states if state in self.pairings)
        undone = {pairing.step for pairing in undoes}
        leaves = tuple(step for step in earlier if step not in undone)
        return FailurePath(path.states, path.terminal, path.ends_in, undoes, leaves)

    def _step(self, name: str) -> StepFailure:
        state = self.states[name]
        role = "effect" if name in self.effects else "compensation" if name in self.compensations else "other"
        earlier = self._earlier(name)
        routes, is_caught_all = self._routes(name, earlier)
        return StepFailure(
            state=name,
            role=role,
            function=function_key(state),
            action=action_of(state),
            earlier=earlier,
            retries=_retry_rules(state),
            catches=tuple(routes),
            is_caught_all=is_caught_all,
        )

    def saga_map(self) -> SagaMap:
        steps = tuple(self._step(name) for name in (*self.effects, *self.compensations, *self.others))
        findings: list[Finding] = []
        for step in steps:
            for finding in self._findings(step):
                if finding not in findings:
                    findings.append(finding)
        return SagaMap(
            start_at=self.start_at,
            happy_path=self.happy_path,
            effect_steps=self.effects,
            pairings=tuple(self.pairings.values()),
            steps=steps,
            findings=tuple(findings),
        )

    # ---- findings

    def _compensation_of(self, step: str) -> str | None:
        return next(
            (pairing.compensation for pairing in self.pairings.values() if pairing.step == step), None
        )

    def _findings(self, step: StepFailure) -> list[Finding]:
        found: list[Finding] = []
        name = step.state
        for route in step.catches:
            when = f"when {name} fails ({_joined(route.error_equals)}{f', through {route.via}' if route.via else ''})"
            for path in route.paths:
                runs = " -> ".join(path.states)
                if path.is_swallowed:
                    found.append(
                        Finding(
                            "swallowed",
                            name,
                            f"{when}, {runs} ends in success at {path.terminal}: "
                            "the execution reports SUCCEEDED after a failure",
                        )
                    )
                if step.role != "effect":
                    continue
                for left in path.leaves:
                    compensation = self._compensation_of(left)
                    why = (
                        f"{compensation} undoes it, but not on this path"
                        if compensation
                        else "no compensation for it was found (by function action or state name)"
                    )
                    found.append(
                        Finding("uncompensated", name, f"{when}, {runs} leaves {left} in place: {why}")
                    )
                for pairing in path.undoes:
                    if pairing.step not in step.earlier:
                        found.append(self._unrun(step, route, pairing, when))
        if step.role == "effect" and step.earlier and not step.is_caught_all:
            caught = sorted({error for route in step.catches for error in route.error_equals})
            what = f"catches only {_joined(caught)}: any other error" if caught else "has no Catch: a failure"
            found.append(
                Finding(
                    "no-catch",
                    name,
                    f"{name} {what}, once its retries are spent, fails the execution "
                    f"and leaves {_joined(step.earlier)} in place",
                )
            )
        return found

    def _unrun(self, step: StepFailure, route: CatchRoute, pairing: Pairing, when: str) -> Finding:
        name = step.state
        if pairing.step != name:
            return Finding(
                "compensates-unrun",
                name,
                f"{when}, {pairing.compensation} undoes {pairing.step}, which has not run on this path",
            )
        if any(error in UNCERTAIN_ERRORS or error.startswith("Lambda.") for error in route.error_equals):
            why = (
                f"deliberate for an uncertain failure (a timeout, a lost response): {name}'s effect "
                "may have landed, so it must be undone too"
            )
        else:
            why = (
                f"{_joined(route.error_equals)} usually means {name} did nothing: "
                f"check that {pairing.compensation} is safe when there is nothing to undo"
            )
        return Finding(
            "compensates-unrun",
            name,
            f"{when}, {pairing.compensation} undoes {name} itself, the step that failed: {why}",
        )
