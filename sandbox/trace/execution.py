"""The trace of any execution of any state machine, built (purely) from its history and definition.

The states in order with their times; each Task's attempts with their errors (retries); which
Catch sent a failed state where; the states run after the first failure marked as compensation;
and each Lambda task's function log lines, found by its request id. Nested states of a Parallel or
Map are kept with their depth when the history tells them apart (``previousEventId``, as AWS
writes it); an engine that writes no nested state events shows their tasks on the outer state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sandbox.json_text import parse_json
from sandbox.logs import PLATFORM, Invocation, LogLine, iso
from sandbox.trace.model import as_datetime, millis_between

CONTAINER_TYPES = frozenset({"Parallel", "Map"})
_ATTEMPT_STARTS = frozenset({"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"})
_ATTEMPT_RUNS = frozenset({"TaskStarted", "LambdaFunctionStarted", "ActivityStarted"})
_ATTEMPT_SUCCEEDS = frozenset({"TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded"})
_ATTEMPT_FAILS = {
    "TaskFailed": "FAILED",
    "TaskStartFailed": "FAILED",
    "TaskSubmitFailed": "FAILED",
    "LambdaFunctionFailed": "FAILED",
    "LambdaFunctionStartFailed": "FAILED",
    "ActivityFailed": "FAILED",
    "TaskTimedOut": "TIMED_OUT",
    "LambdaFunctionTimedOut": "TIMED_OUT",
    "ActivityTimedOut": "TIMED_OUT",
}
_STATE_FAILS = frozenset({"ParallelStateFailed", "MapStateFailed"})
EXECUTION_ENDS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}
# An invocation whose start is this close to an attempt's window still belongs to it: the engine
# stamps a run's lines in whole milliseconds at its end and reports its duration in whole ones.
MATCH_SLACK = timedelta(milliseconds=5)
MIN_TOKEN_LENGTH = 6  # shorter strings of the input ("EUR", "1") say nothing about which execution
MAX_TOKENS = 64


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class Attempt:
    """One try of a Task: when, how it ended, and the function run it made."""

    number: int
    started_at: datetime
    ended_at: datetime | None
    status: str  # SUCCEEDED, FAILED, TIMED_OUT or RUNNING
    error: str | None = None
    cause: str | None = None
    request_id: str | None = None
    log_lines: tuple[LogLine, ...] = ()
    fault: dict[str, Any] | None = None  # the fault rule the engine injected into this attempt
    held_seconds: float | None = None  # how long a debugger held it (`sandbox debug`)

    @property
    def duration_ms(self) -> int | None:
        return millis_between(self.started_at, self.ended_at) if self.ended_at else None

    @property
    def fault_text(self) -> str | None:
        """``injected error (rule f1)``, when a fault rule broke this attempt."""
        return f"injected {self.fault['kind']} (rule {self.fault['rule']})" if self.fault else None

    @property
    def held_text(self) -> str | None:
        """``held in debugger 12.3 s``, when a debugger held this attempt."""
        return f"held in debugger {self.held_seconds:.1f} s" if self.held_seconds is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "injectedFault": self.fault,
            "heldInDebuggerSeconds": self.held_seconds,
            "startedAt": iso(self.started_at),
            "endedAt": iso(self.ended_at) if self.ended_at else None,
            "durationMs": self.duration_ms,
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "requestId": self.request_id,
            "logLines": [line.to_json() for line in self.log_lines],
        }


@dataclass(frozen=True)
class CatchRoute:
    """A Catch that took a failed state elsewhere: the error, the ErrorEquals entry it matched, where to."""

    state: str
    error: str | None
    matched: str | None
    next: str

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "error": self.error, "matched": self.matched, "next": self.next}


@dataclass(frozen=True)
class StateVisit:
    """One entry into a state, from its StateEntered to its StateExited."""

    name: str
    type: str
    entered_at: datetime
    exited_at: datetime | None
    status: str  # SUCCEEDED, FAILED or RUNNING
    depth: int = 0
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    attempts: tuple[Attempt, ...] = ()
    catch: CatchRoute | None = None
    is_compensation: bool = False
    function: str | None = None
    redrive: int = 0  # the redrive that entered it (0: the execution's first run)

    @property
    def duration_ms(self) -> int | None:
        return millis_between(self.entered_at, self.exited_at) if self.exited_at else None

    @property
    def retries(self) -> int:
        return max(len(self.attempts) - 1, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "depth": self.depth,
            "enteredAt": iso(self.entered_at),
            "exitedAt": iso(self.exited_at) if self.exited_at else None,
            "durationMs": self.duration_ms,
            "status": self.status,
            "isCompensation": self.is_compensation,
            "function": self.function,
            "redrive": self.redrive,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "catch": self.catch.to_json() if self.catch else None,
        }


@dataclass(frozen=True)
class ExecutionTrace:
    """What one execution did, state by state."""

    arn: str
    name: str
    state_machine: str  # the state machine's logical id, else its name
    status: str
    started_at: datetime
    stopped_at: datetime | None
    states: list[StateVisit]
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    notes: list[str] = field(default_factory=list)
    redrive_count: int = 0  # how many times it was redriven (RedriveExecution)

    @property
    def duration_ms(self) -> int | None:
        return millis_between(self.started_at, self.stopped_at) if self.stopped_at else None

    @property
    def is_succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @property
    def catches(self) -> list[CatchRoute]:
        return [state.catch for state in self.states if state.catch]

    @property
    def compensations(self) -> list[str]:
        return [state.name for state in self.states if state.is_compensation]

    @property
    def injected_faults(self) -> list[dict[str, Any]]:
        """The faults the engine injected into this execution's task attempts, in order."""
        return [
            {**attempt.fault, "state": state.name}
            for state in self.states
            for attempt in state.attempts
            if attempt.fault
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "executionArn": self.arn,
            "name": self.name,
            "stateMachine": self.state_machine,
            "status": self.status,
            "startedAt": iso(self.started_at),
            "stoppedAt": iso(self.stopped_at) if self.stopped_at else None,
            "durationMs": self.duration_ms,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "states": [state.to_json() for state in self.states],
            "catches": [catch.to_json() for catch in self.catches],
            "compensations": self.compensations,
            "injectedFaults": self.injected_faults,
            "redriveCount": self.redrive_count,
            "notes": self.notes,
        }


# ------------------------------------------------------------------ definition


def state_definitions(definition: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every state of the definition by name, nested ones (Parallel branches, Map processors) too."""
    found: dict[str, dict[str, Any]] = {}

    def walk(machine: Any) -> None:
        if not isinstance(machine, dict):
            return
        for name, state in (machine.get("States") or {}).items():
            if not isinstance(state, dict):
                continue
            found.setdefault(name, state)
            for branch in state.get("Branches") or []:
                walk(branch)
            walk(state.get("ItemProcessor") or state.get("Iterator"))

    walk(definition)
    return found


def function_name_of(reference: Any) -> str | None:
    """A Lambda function's name from its name, ARN (``...:function:NAME[:qualifier]``) or partial ARN."""
    if not isinstance(reference, str) or not reference or reference.startswith("$"):
        return None
    if ":function:" in reference:
        return reference.split(":function:", 1)[1].split(":", 1)[0]
    if reference.startswith("arn:"):
        return None
    return reference.split(":", 1)[0]


def function_of_state(state: dict[str, Any] | None, parameters: Any = None) -> str | None:
    """The Lambda function a Task state invokes; None for any other state or resource."""
    if not state or state.get("Type") != "Task":
        return None
    resource = str(state.get("Resource") or "")
    if ":function:" in resource:
        return function_name_of(resource)
    if "states:::lambda:invoke" not in resource:
        return None
    for source in (parameters, state.get("Parameters"), state.get("Arguments")):
        if isinstance(source, dict) and function_name_of(source.get("FunctionName")):
            return function_name_of(source.get("FunctionName"))
    return None


def _error_matches(pattern: str, error: str | None) -> bool:
    if pattern == "States.ALL":
        return True
    if pattern == "States.TaskFailed":
        return error not in (None, "States.Timeout") and not str(error).startswith("States.")
    return pattern == error


def catcher_matched(state: dict[str, Any] | None, error: str | None, target: str) -> str | None:
    """The ErrorEquals entry of the state's Catch that sent ``error`` to ``target`` (first match)."""
    for catcher in (state or {}).get("Catch") or []:
        for pattern in catcher.get("ErrorEquals") or []:
            if _error_matches(str(pattern), error):
                return str(pattern) if catcher.get("Next") == target else None
    return None


def catch_targets(state: dict[str, Any] | None) -> set[str]:
    return {str(catcher.get("Next")) for catcher in (state or {}).get("Catch") or []}


# ------------------------------------------------------------------ history


@dataclass
class _Attempt:
    number: int
    started_at: datetime
    ended_at: datetime | None = None
    status: str = "RUNNING"
    error: str | None = None
    cause: str | None = None
    request_id: str | None = None
    function: str | None = None


@dataclass
class _Visit:
    name: str
    type: str
    entered_at: datetime
    parent: _Visit | None
    depth: int
    input: Any = None
    exited_at: datetime | None = None
    output: Any = None
    attempts: list[_Attempt] = field(default_factory=list)
    failure: tuple[str | None, str | None] | None = None  # error, cause
    catch: CatchRoute | None = None
    is_compensation: bool = False
    execution_failed: bool = False
    redrive: int = 0

    @property
    def is_open(self) -> bool:
        return self.exited_at is None


def _details(event: dict[str, Any]) -> dict[str, Any]:
    """The event's ``...EventDetails`` member (every event type names its own)."""
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def request_id_of(output: Any) -> str | None:
    """The Lambda request id a ``lambda:invoke`` task's output carries (as AWS returns it), if any."""
    parsed = parse_json(output)
    if not isinstance(parsed, dict):
        return None
    metadata = parsed.get("SdkResponseMetadata")
    if isinstance(metadata, dict) and metadata.get("RequestId"):
        return str(metadata["RequestId"])
    headers = (
        (parsed.get("SdkHttpMetadata") or {}).get("HttpHeaders")
        if isinstance(parsed.get("SdkHttpMetadata"), dict)
        else None
    )
    if isinstance(headers, dict):
        for key, value in headers.items():
            if key.lower() == "x-amzn-requestid" and value:
                return str(value)
    return None


def failed_request_id(cause: Any) -> str | None:
    """The request id a failed Lambda task's cause names (a Python runtime's error carries it, as on AWS)."""
    parsed = parse_json(cause)
    request_id = parsed.get("requestId") if isinstance(parsed, dict) else None
    return request_id if isinstance(request_id, str) and request_id else None


def _error_in(output: Any) -> tuple[str | None, str | None] | None:
    """The (Error, Cause) a Catch's ResultPath left in a state's output, at its top or one level down."""
    if not isinstance(output, dict):
        return None
    for candidate in (output, *[value for value in output.values() if isinstance(value, dict)]):
        if "Error" in candidate and "Cause" in candidate:
            return (str(candidate["Error"]), str(candidate["Cause"]))
    return None


class _HistoryReader:
    """Walks a history once, event by event, into visits."""

    def __init__(self, definition: dict[str, Any] | None):
        self.states = state_definitions(definition)
        self.visits: list[_Visit] = []
        self.owner: dict[int, _Visit] = {}
        self.end: tuple[str, datetime, str | None, str | None] | None = None  # status, at, error, cause
        self.last_exited: dict[int, _Visit] = {}  # the last visit that exited, by its parent visit's id
        self.is_failing = False
        self.redrive = 0  # the latest ExecutionRedriven's redriveCount

    def _open(self) -> list[_Visit]:
        return [visit for visit in self.visits if visit.is_open]

    def _by_chain(self, event: dict[str, Any]) -> _Visit | None:
        previous = event.get("previousEventId")
        return self.owner.get(int(previous)) if previous is not None else None

    def _parent_for(self, event: dict[str, Any]) -> _Visit | None:
        previous = self._by_chain(event)
        if previous is not None:
            return previous if previous.is_open and previous.type in CONTAINER_TYPES else previous.parent
        containers = [visit for visit in self._open() if visit.type in CONTAINER_TYPES]
        return containers[-1] if containers else None

    def _visit_for(self, event: dict[str, Any]) -> _Visit | None:
        visit = self._by_chain(event)
        if visit is not None:
            return visit
        open_visits = self._open()
        return open_visits[-1] if open_visits else None

    def read(self, history: list[dict[str, Any]]) -> None:
        for event in sorted(history, key=lambda item: int(item["id"])):
            kind = str(event["type"])
            at = as_datetime(event["timestamp"])
            visit: _Visit | None
            if kind.endswith("StateEntered"):
                visit = self._enter(event, kind.removesuffix("StateEntered"), at)
            elif kind.endswith("StateExited"):
                visit = self._exit(event, at)
            elif kind in EXECUTION_ENDS:
                self._end(kind, at, _details(event))
                continue
            elif kind == "ExecutionRedriven":  # the run goes on where it stopped: not ended any more
                self.redrive = int(_details(event).get("redriveCount") or self.redrive + 1)
                self.end = None
                continue
            else:
                visit = self._visit_for(event)
                if visit is not None:
                    self._task_event(visit, kind, at, event)
            if visit is not None:
                self.owner[int(event["id"])] = visit

    def _enter(self, event: dict[str, Any], state_type: str, at: datetime) -> _Visit:
        details = event.get("stateEnteredEventDetails") or {}
        parent = self._parent_for(event)
        visit = _Visit(
            str(details.get("name")), state_type, at, parent,
            parent.depth + 1 if parent else 0, parse_json(details.get("input")),
        )  # fmt: skip
        previous = self.last_exited.pop(id(parent), None)
        if previous is not None:
            self._route(previous, visit)
        if self.is_failing and state_type not in ("Fail", "Succeed"):
            visit.is_compensation = True
        visit.redrive = self.redrive
        self.visits.append(visit)
        return visit

    def _route(self, previous: _Visit, visit: _Visit) -> None:
        """How the run went from ``previous`` to ``visit``: through a Catch when ``previous`` failed."""
        state = self.states.get(previous.name)
        # An engine that writes no failure event for a caught Parallel/Map: its exit went to a
        # Catch's Next rather than its own Next.
        if (
            previous.failure is None
            and state is not None
            and previous.type in CONTAINER_TYPES
            and visit.name in catch_targets(state)
            and visit.name != state.get("Next")
        ):
            previous.failure = _error_in(previous.output) or (None, None)
        if previous.failure is None:
            return
        error, _cause = previous.failure
        previous.catch = CatchRoute(
            previous.name, error, catcher_matched(state, error, visit.name), visit.name
        )
        self.is_failing = True
        if visit.type not in ("Fail", "Succeed"):
            visit.is_compensation = True

    def _exit(self, event: dict[str, Any], at: datetime) -> _Visit | None:
        details = event.get("stateExitedEventDetails") or {}
        name = str(details.get("name"))
        chained = self._by_chain(event)
        candidates = [chained] if chained is not None and chained.name == name else []
        candidates += [visit for visit in reversed(self._open()) if visit.name == name]
        if not candidates:
            return None
        visit = candidates[0]
        visit.exited_at = at
        visit.output = parse_json(details.get("output"))
        last = visit.attempts[-1] if visit.attempts else None
        if last is not None and last.status != "SUCCEEDED":
            visit.failure = (last.error, last.cause)
        self.last_exited[id(visit.parent)] = visit
        return visit

    def _task_event(self, visit: _Visit, kind: str, at: datetime, event: dict[str, Any]) -> None:
        details = _details(event)
        if kind in _ATTEMPT_STARTS:
            parameters = parse_json(details.get("parameters"))
            function = function_of_state(self.states.get(visit.name), parameters)
            if function is None and kind == "LambdaFunctionScheduled":
                function = function_name_of(details.get("resource"))
            visit.attempts.append(_Attempt(len(visit.attempts) + 1, at, function=function))
            return
        # The oldest attempt still running: a retry starts after its attempt ended, and the tasks
        # of a Parallel's branches (the engine reports no branch states) end in the order they began.
        attempt = next((a for a in visit.attempts if a.status == "RUNNING"), None) or (
            visit.attempts[-1] if visit.attempts else None
        )
        if kind in _STATE_FAILS:
            visit.failure = (details.get("error"), details.get("cause"))
        elif attempt is None:
            return
        elif kind in _ATTEMPT_RUNS:
            attempt.request_id = attempt.request_id or request_id_of(details.get("output"))
        elif kind in _ATTEMPT_SUCCEEDS:
            attempt.status, attempt.ended_at = "SUCCEEDED", at
            attempt.request_id = attempt.request_id or request_id_of(details.get("output"))
        elif kind in _ATTEMPT_FAILS:
            attempt.status, attempt.ended_at = _ATTEMPT_FAILS[kind], at
            attempt.error = str(details.get("error") or kind)
            attempt.cause = details.get("cause")
            attempt.request_id = attempt.request_id or failed_request_id(attempt.cause)

    def _end(self, kind: str, at: datetime, details: dict[str, Any]) -> None:
        status = EXECUTION_ENDS[kind]
        self.end = (status, at, details.get("error"), details.get("cause"))
        for visit in self._open():
            visit.exited_at = at
            if status == "SUCCEEDED":
                continue
            visit.execution_failed = True
            last = visit.attempts[-1] if visit.attempts else None
            if visit.failure is None:
                if last is not None and last.status != "SUCCEEDED":
                    visit.failure = (last.error, last.cause)
                elif visit.type != "Fail" and not any(
                    child.parent is visit and child.failure for child in self.visits
                ):
                    visit.failure = (details.get("error"), details.get("cause"))
            if visit.type == "Fail" and visit.failure is None:
                visit.failure = (details.get("error"), details.get("cause"))


def tries_text(state: StateVisit) -> str:
    """A state's tries as a trace names them: a task's attempts, a Parallel's or Map's branch tasks."""
    if not state.attempts:
        return state.type
    return _plural(len(state.attempts), "task" if state.type in CONTAINER_TYPES else "attempt")


def attempt_words(state: StateVisit, attempt: Attempt) -> tuple[str, str]:
    """How a trace names an attempt, and what followed it. The tasks a Parallel or Map ran (the
    engine reports no state inside a branch) are its branches' tasks, not retries of one another."""
    if state.type in CONTAINER_TYPES:
        return f"task {attempt.number}", ""
    return f"attempt {attempt.number}", "; retried" if attempt.number < len(state.attempts) else ""


def _freeze(visit: _Visit, lines_of: dict[int, tuple[str | None, tuple[LogLine, ...]]]) -> StateVisit:
    attempts = []
    for attempt in visit.attempts:
        request_id, lines = lines_of.get(id(attempt), (attempt.request_id, ()))
        frozen = Attempt(
            attempt.number, attempt.started_at, attempt.ended_at, attempt.status, attempt.error,
            attempt.cause, request_id or attempt.request_id, lines,
        )  # fmt: skip
        attempts.append(frozen)
    if visit.exited_at is None:
        status = "RUNNING"
    elif visit.failure is not None or visit.type == "Fail":
        status = "FAILED"
    else:
        status = "SUCCEEDED"
    error, cause = visit.failure or (None, None)
    function = next((attempt.function for attempt in visit.attempts if attempt.function), None)
    return StateVisit(
        visit.name, visit.type, visit.entered_at, visit.exited_at, status, visit.depth, visit.input,
        visit.output, error, cause, tuple(attempts), visit.catch, visit.is_compensation, function,
        visit.redrive,
    )  # fmt: skip


# ------------------------------------------------------------------ log lines


def input_tokens(value: Any, *, limit: int = MAX_TOKENS) -> list[str]:
    """The longer strings (and big numbers) of an execution's input: ids that its function runs may log."""
    tokens: list[str] = []

    def walk(item: Any) -> None:
        if len(tokens) >= limit:
            return
        if isinstance(item, dict):
            for child in item.values():
                walk(child)
        elif isinstance(item, list):
            for child in item:
                walk(child)
        elif isinstance(item, str | int) and not isinstance(item, bool):
            text = str(item)
            if len(text) >= MIN_TOKEN_LENGTH and text not in tokens:
                tokens.append(text)

    walk(value)
    return tokens


def _invocation_end(invocation: Invocation) -> datetime:
    return invocation.started_at + timedelta(milliseconds=invocation.duration_ms or 0)


def match_invocations(
    attempts: list[_Attempt], invocations: list[Invocation], tokens: list[str]
) -> tuple[dict[int, tuple[str | None, tuple[LogLine, ...]]], int]:
    """Each Lambda attempt's invocation: by the request id the history gives, else by time.

    An invocation of the attempt's function that started while the attempt ran is its run; when
    several did (executions running at once), the one whose lines mention most of the execution's
    own ids (``tokens``) is, if exactly one does. Returns the matches and how many attempts stayed
    ambiguous.
    """
    by_request = {invocation.request_id: invocation for invocation in invocations}
    used: set[tuple[str, str]] = set()
    found: dict[int, tuple[str | None, tuple[LogLine, ...]]] = {}
    ambiguous = 0
    for attempt in attempts:
        if attempt.request_id and attempt.request_id in by_request:
            invocation = by_request[attempt.request_id]
            used.add((invocation.stream, invocation.request_id))
            found[id(attempt)] = (attempt.request_id, invocation.lines)
    for attempt in attempts:
        if id(attempt) in found or attempt.function is None:
            continue
        until = (attempt.ended_at or datetime.max.replace(tzinfo=attempt.started_at.tzinfo)) + MATCH_SLACK
        candidates = [
            invocation
            for invocation in invocations
            if invocation.function == attempt.function
            and (invocation.stream, invocation.request_id) not in used
            and attempt.started_at - MATCH_SLACK <= invocation.started_at <= until
            and (attempt.status == "TIMED_OUT" or _invocation_end(invocation) <= until + MATCH_SLACK)
        ]
        chosen = _choose(candidates, tokens)
        if chosen is None:
            ambiguous += len(candidates) > 1
            continue
        used.add((chosen.stream, chosen.request_id))
        found[id(attempt)] = (chosen.request_id, chosen.lines)
    return found, ambiguous


def _choose(candidates: list[Invocation], tokens: list[str]) -> Invocation | None:
    if len(candidates) <= 1:
        return candidates[0] if candidates else None

    def score(invocation: Invocation) -> int:
        text = "\n".join(line.raw for line in invocation.lines)
        return sum(token in text for token in tokens)

    scored = sorted(((score(invocation), invocation) for invocation in candidates), key=lambda pair: -pair[0])
    best, runner_up = scored[0][0], scored[1][0]
    return scored[0][1] if best > runner_up else None


# ------------------------------------------------------------------ trace


def build_execution_trace(
    described: dict[str, Any],
    history: list[dict[str, Any]],
    *,
    state_machine: str,
    definition: dict[str, Any] | None = None,
    invocations: list[Invocation] | None = None,
) -> ExecutionTrace:
    """An execution's trace from ``DescribeExecution``, its history, its definition and its functions' runs.

    ``invocations`` are the runs of the functions its tasks invoke (``LogLine.function`` is the
    physical function name); without them no log lines are attached.
    """
    reader = _HistoryReader(definition)
    reader.read(history)
    notes: list[str] = []
    if definition is None:
        notes.append("the state machine's definition could not be read: Catch entries are not named")
    execution_input = parse_json(described.get("input"))
    attempts = [attempt for visit in reader.visits for attempt in visit.attempts]
    lines_of: dict[int, tuple[str | None, tuple[LogLine, ...]]] = {}
    if invocations is not None:
        tokens = [str(described.get("name") or ""), *input_tokens(execution_input)]
        lines_of, ambiguous = match_invocations(attempts, invocations, [t for t in tokens if t])
        if ambiguous:
            notes.append(
                f"{ambiguous} task attempt(s) overlap runs of the same function by other executions and "
                "none of those runs names this execution's input: their log lines are not shown "
                "(see `sandbox logs FUNCTION`)"
            )
    status = str(described.get("status") or (reader.end[0] if reader.end else "RUNNING"))
    stopped = described.get("stopDate") or (reader.end[1] if reader.end else None)
    return ExecutionTrace(
        arn=str(described.get("executionArn", "")),
        name=str(described.get("name", "")),
        state_machine=state_machine,
        status=status,
        started_at=as_datetime(described["startDate"]),
        stopped_at=as_datetime(stopped) if stopped else None,
        states=[_freeze(visit, lines_of) for visit in reader.visits],
        input=execution_input,
        output=parse_json(described.get("output")),
        error=described.get("error") or (reader.end[2] if reader.end else None),
        cause=described.get("cause") or (reader.end[3] if reader.end else None),
        notes=notes,
        redrive_count=int(described.get("redriveCount") or reader.redrive),
    )


def with_injections(trace: ExecutionTrace, injections: list[dict[str, Any]]) -> ExecutionTrace:
    """The trace with each fault the engine injected attached to the task attempt it broke."""
    by_attempt = {(entry.get("state"), entry.get("attempt")): entry for entry in injections}
    if not by_attempt:
        return trace

    def marked(state: StateVisit) -> StateVisit:
        attempts = tuple(
            replace(attempt, fault=_fault_of(by_attempt.get((state.name, attempt.number))))
            for attempt in state.attempts
        )
        return replace(state, attempts=attempts)

    return replace(trace, states=[marked(state) for state in trace.states])


def with_holds(trace: ExecutionTrace, holds: list[dict[str, Any]]) -> ExecutionTrace:
    """The trace with the time a debugger held each attempt (by its invocation's request id)."""
    held = {hold.get("requestId"): float(hold["heldSeconds"]) for hold in holds}
    if not held:
        return trace

    def marked(state: StateVisit) -> StateVisit:
        attempts = tuple(replace(a, held_seconds=held.get(a.request_id)) for a in state.attempts)
        return replace(state, attempts=attempts)

    return replace(trace, states=[marked(state) for state in trace.states])


def _fault_of(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {
        "rule": entry["rule"],
        "kind": entry["kind"],
        "target": entry["target"],
        "attempt": entry["attempt"],
    }


def cause_message(cause: Any) -> str:
    """A Lambda error's message from its JSON cause (``errorMessage``), or the cause as it is."""
    parsed = parse_json(cause)
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return str(cause or "")


# ------------------------------------------------------------------ text


def redrive_text(count: int) -> str:
    """The line a trace shows where a redrive restarted the execution."""
    return f"⟳ redrive {count}: restarted at the state it had not completed"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def _failure_text(error: str | None, cause: Any) -> str:
    message = cause_message(cause)
    return f"{error or 'failed'}: {message}" if message else str(error or "failed")


def render_execution_text(trace: ExecutionTrace, *, max_log_lines: int = 20) -> str:
    """The trace as plain text: a line per state, its attempts, Catch routes and log lines."""
    took = f" in {trace.duration_ms / 1000:.2f}s" if trace.duration_ms is not None else ""
    lines = [f"execution {trace.name} of {trace.state_machine}: {trace.status}{took}"]
    redrive = 0
    for state in trace.states:
        if state.redrive != redrive:
            redrive = state.redrive
            lines.append(f"  {'':>10}  {redrive_text(redrive)}")
        offset = millis_between(trace.started_at, state.entered_at)
        indent = "  " * state.depth
        marker = "↩" if state.is_compensation else ("✗" if state.status == "FAILED" else "→")
        duration = f"{state.duration_ms} ms" if state.duration_ms is not None else ""
        tries = tries_text(state)
        label = f"{indent}{marker} {state.name}"
        extra = "compensation" if state.is_compensation else ""
        if state.function:
            extra = f"{extra}, {state.function}" if extra else state.function
        lines.append(
            f"  {offset:>+7} ms  {label:<32} {state.status:<10} {tries:<11} {duration:>8}  {extra}".rstrip()
        )
        for attempt in state.attempts:
            if len(state.attempts) > 1 or attempt.status != "SUCCEEDED" or attempt.fault or attempt.held_text:
                outcome = (
                    attempt.status
                    if attempt.status == "SUCCEEDED"
                    else _failure_text(attempt.error, attempt.cause)
                )
                named, then = attempt_words(state, attempt)
                injected = f" ⚡ {attempt.fault_text}" if attempt.fault_text else ""
                injected += f" ⏸ {attempt.held_text}" if attempt.held_text else ""
                lines.append(f"  {'':>10}  {indent}  {named}: {outcome}{injected}{then}")
            shown = [line for line in attempt.log_lines if line.level != PLATFORM]
            for line in shown[:max_log_lines]:
                lines.append(f"  {'':>10}  {indent}    | {line.level:<8} {line.message}")
            if len(shown) > max_log_lines:
                lines.append(
                    f"  {'':>10}  {indent}    | … {len(shown) - max_log_lines} more lines (sandbox logs)"
                )
        if state.catch:
            matched = f" (matched {state.catch.matched})" if state.catch.matched else ""
            lines.append(
                f"  {'':>10}  {indent}  Catch {state.catch.error or 'error'}{matched} → {state.catch.next}"
            )
        elif state.status == "FAILED" and state.type != "Fail" and not state.attempts:
            lines.append(f"  {'':>10}  {indent}  {_failure_text(state.error, state.cause)}")
    ending = f" — {_failure_text(trace.error, trace.cause)}" if trace.error or trace.cause else ""
    lines.append(f"execution {trace.status}{ending}")
    lines += [f"note: {note}" for note in trace.notes]
    return "\n".join(lines) + "\n"
