"""Saga histories as test artifacts: a normalized history of an execution, saved, compared, asserted.

A history says what an execution of any state machine did, and nothing of when or where: the
states entered in order, each with its attempts (errors and causes), the Catch that moved it, the
compensations, each state's input and output, the faults the engine injected. ARNs, uuids (request
ids among them), the execution's name and timestamps become numbered placeholders (the same value,
the same placeholder, within a document), durations ``<duration>``, and the JSON paths a user names
``<masked>``. What differs between engines (Lambda's SDK metadata, stack traces in causes, physical
names) is left out, so a history read from the embedded engine, LocalStack or AWS reads the same.

``diff_histories`` compares two of them into differences a person reads (a path that diverged, an
extra retry, an error that changed, an output that changed); ``HistoryCheck`` is the snapshot
assertion behind the pytest plugin's ``assert_history``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sandbox.errors import UsageError
from sandbox.json_text import parse_json

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from sandbox.aws import AwsTarget
    from sandbox.stack import LocalStack
    from sandbox.trace.execution import ExecutionTrace, StateVisit

FORMAT = 1
HISTORIES_FOLDER = "histories"
MASKED = "<masked>"
DURATION = "<duration>"
UPDATE_FLAG = "--sandbox-update-histories"
# Metadata the Lambda and SDK integrations add to a task's result: it names the engine, not the saga.
SDK_METADATA_KEYS = frozenset(
    {"SdkHttpMetadata", "SdkResponseMetadata", "ExecutedVersion", "ResponseMetadata"}
)
DURATION_KEY = re.compile(r"(duration|elapsed|latency)(_?(ms|millis|seconds|s))?$", re.IGNORECASE)
ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d*:[^\s\"',;)}\]]+")
UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?(?![\d:])")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A shorter execution name ("try-1") is replaced only where it is the whole text: inside other text
# it may be a part of another word.
MIN_NAME_IN_TEXT = 8
MAX_VALUE_DIFFS = 8  # per input or output: more says "and N more"


class HistoryNotFoundError(UsageError):
    """No saved history by that name or file."""


class HistoryMismatchError(AssertionError):
    """An execution's history differs from its saved one (or none is saved); the message shows how."""


# ------------------------------------------------------------------ masks


def _parse_mask(path: str) -> list[tuple[str, Any]]:
    """A JSON path (``$.a.b``, ``$.a[0]``, ``$.items[*].id``, ``$..id``, ``$['a b']``) as steps."""
    text = path.strip()
    if not text.startswith("$"):
        raise UsageError(f"--mask {path!r}: a JSON path starts with $", hint="e.g. --mask '$.order.id'")
    steps: list[tuple[str, Any]] = []
    position = 1
    pattern = re.compile(
        r"\.\.(?P<deep>[A-Za-z0-9_$-]+|\*)|\.(?P<key>[A-Za-z0-9_$-]+|\*)"
        r"|\[(?P<index>-?\d+|\*)\]|\[['\"](?P<quoted>[^'\"]+)['\"]\]"
    )
    while position < len(text):
        match = pattern.match(text, position)
        if match is None:
            raise UsageError(
                f"--mask {path!r}: cannot read it from {text[position:]!r}",
                hint="use $.key, $.list[0], $.list[*].key, $..key or $['a key']",
            )
        if match["deep"] is not None:
            steps.append(("deep", match["deep"]))
        elif match["key"] is not None:
            steps.append(("key", match["key"]))
        elif match["quoted"] is not None:
            steps.append(("key", match["quoted"]))
        else:
            steps.append(("index", match["index"]))
        position = match.end()
    if not steps:
        raise UsageError(f"--mask {path!r} names the whole document", hint="name a field, e.g. $.order.id")
    return steps


def check_masks(masks: Sequence[str]) -> list[str]:
    """The masks, each checked to be a JSON path this module reads (UsageError otherwise)."""
    for mask in masks:
        _parse_mask(mask)
    return list(masks)


def _masked(value: Any, steps: list[tuple[str, Any]]) -> Any:
    if not steps:
        return MASKED
    kind, name = steps[0]
    rest = steps[1:]
    if kind == "deep":
        if isinstance(value, dict):
            return {
                key: _masked(child, rest) if name in ("*", key) else _masked(child, steps)
                for key, child in value.items()
            }
        if isinstance(value, list):
            return [_masked(child, steps) for child in value]
        return value
    if kind == "key" and isinstance(value, dict):
        return {key: _masked(child, rest) if name in ("*", key) else child for key, child in value.items()}
    if kind == "key" and name == "*" and isinstance(value, list):
        return [_masked(child, rest) for child in value]
    if kind == "index" and isinstance(value, list):
        if name == "*":
            return [_masked(child, rest) for child in value]
        index = int(name) % len(value) if value else 0
        return [_masked(child, rest) if i == index else child for i, child in enumerate(value)]
    return value


def mask_value(value: Any, masks: Sequence[str]) -> Any:
    """``value`` with what each JSON path names replaced by ``<masked>`` (paths that match nothing do nothing)."""
    for mask in masks:
        value = _masked(value, _parse_mask(mask))
    return value


# ------------------------------------------------------------------ placeholders


def _walk_strings(value: Any) -> Iterator[str]:
    """Every string of ``value`` (keys' values only), dict keys in sorted order: engines order keys differently."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _walk_strings(value[key])
    elif isinstance(value, list):
        for child in value:
            yield from _walk_strings(child)


def _arn_kind(arn: str) -> str:
    parts = arn.split(":")
    resource = parts[5] if len(parts) > 5 else ""
    kinds = {"execution": "execution-arn", "stateMachine": "state-machine-arn", "function": "function-arn"}
    return kinds.get(resource.split("/", 1)[0], "arn")


@dataclass
class Placeholders:
    """Volatile values and the numbered placeholders that stand for them in one document."""

    execution_name: str | None = None
    known: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def _number(self, kind: str, value: str) -> str:
        if value not in self.known:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.known[value] = f"<{kind}-{self.counts[kind]}>"
        return self.known[value]

    def learn(self, document: Any) -> None:
        """Number the volatile values in the order a walk of ``document`` first meets them."""
        for text in _walk_strings(document):
            self.text(text)

    def text(self, text: str) -> str:
        """``text`` with each volatile value (whole or inside it) replaced by its placeholder."""
        text = ARN.sub(lambda match: self._number(_arn_kind(match[0]), match[0]), text)
        name = self.execution_name
        if name and (text == name or len(name) >= MIN_NAME_IN_TEXT):
            text = text.replace(name, "<execution-name>")
        text = UUID.sub(lambda match: self._number("uuid", match[0].lower()), text)
        return TIMESTAMP.sub(lambda match: self._number("timestamp", match[0]), text)

    def apply(self, value: Any) -> Any:
        """``value`` with every string's volatile values replaced, and durations hidden."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: DURATION
                if DURATION_KEY.search(str(key)) and isinstance(value[key], int | float)
                else self.apply(value[key])
                for key in value
            }
        if isinstance(value, list):
            return [self.apply(child) for child in value]
        return value


# ------------------------------------------------------------------ normalizing


def normalize_cause(cause: Any) -> Any:
    """A cause as data: a Lambda error as its type and message (its stack trace and request id name
    the engine and the run); other JSON as data; text as it is."""
    parsed = parse_json(cause)
    if isinstance(parsed, dict) and ("errorType" in parsed or "errorMessage" in parsed):
        return {"errorType": parsed.get("errorType"), "errorMessage": parsed.get("errorMessage")}
    if cause == "":
        return None
    return parsed


def normalize_payload(value: Any) -> Any:
    """An execution's or state's data without the SDK's metadata, each ``Cause`` read as data."""
    if isinstance(value, dict):
        return {
            key: normalize_cause(child) if key in ("Cause", "cause") else normalize_payload(child)
            for key, child in value.items()
            if key not in SDK_METADATA_KEYS
        }
    if isinstance(value, list):
        return [normalize_payload(child) for child in value]
    return value


def _payload(value: Any, masks: Sequence[str]) -> Any:
    return mask_value(normalize_payload(value), masks)


def _state_document(state: StateVisit, masks: Sequence[str]) -> dict[str, Any]:
    return {
        "name": state.name,
        "type": state.type,
        "depth": state.depth,
        "status": state.status,
        "isCompensation": state.is_compensation,
        "attempts": [
            {"status": attempt.status, "error": attempt.error, "cause": normalize_cause(attempt.cause)}
            for attempt in state.attempts
        ],
        "error": state.error,
        "cause": normalize_cause(state.cause),
        "catch": {"error": state.catch.error, "matched": state.catch.matched, "next": state.catch.next}
        if state.catch
        else None,
        "input": _payload(state.input, masks),
        "output": _payload(state.output, masks),
    } | ({"redrive": state.redrive} if state.redrive else {})  # entered by the Nth RedriveExecution


def _faults_document(injections: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if injections is None:
        return None
    faults = [
        {"state": entry.get("state"), "attempt": entry.get("attempt"), "kind": entry.get("kind"),
         "target": entry.get("target"), "error": entry.get("error")}
        for entry in injections
    ]  # fmt: skip
    return sorted(faults, key=lambda fault: (str(fault["state"]), int(fault["attempt"] or 0)))


def history_of_trace(
    trace: ExecutionTrace, injections: list[dict[str, Any]] | None, masks: Sequence[str] = ()
) -> dict[str, Any]:
    """The normalized history of an execution's trace; ``injections`` None: the engine cannot tell."""
    masks = check_masks(masks)
    document: dict[str, Any] = {
        "format": FORMAT,
        "stateMachine": trace.state_machine,
        "status": trace.status,
        "error": trace.error,
        "cause": normalize_cause(trace.cause),
        "input": _payload(trace.input, masks),
        "output": _payload(trace.output, masks),
        "states": [_state_document(state, masks) for state in trace.states],
        "compensations": trace.compensations,
        "injectedFaults": _faults_document(injections),
        "masks": masks,
    } | ({"redriveCount": trace.redrive_count} if trace.redrive_count else {})
    placeholders = Placeholders(trace.name or None)
    placeholders.learn(document)
    return placeholders.apply(document)  # type: ignore[no-any-return]


def normalize_history(
    described: dict[str, Any],
    events: list[dict[str, Any]],
    *,
    state_machine: str,
    definition: dict[str, Any] | None = None,
    injections: list[dict[str, Any]] | None = None,
    masks: Sequence[str] = (),
) -> dict[str, Any]:
    """The normalized history of an execution from DescribeExecution and GetExecutionHistory."""
    from sandbox.trace.execution import build_execution_trace

    trace = build_execution_trace(described, events, state_machine=state_machine, definition=definition)
    return history_of_trace(trace, injections, masks)


# ------------------------------------------------------------------ reading


def read_history(
    sfn: SFNClient,
    execution_arn: str,
    *,
    state_machine: str,
    injections: list[dict[str, Any]] | None = None,
    masks: Sequence[str] = (),
) -> dict[str, Any]:
    """An execution's normalized history, read through the Step Functions API (any engine, or AWS)."""
    from sandbox.executions import describe_execution, history_of
    from sandbox.trace.execution_reading import read_definition

    described = describe_execution(
        sfn, execution_arn, hint="give the ARN `sandbox trace --last --json` shows"
    )
    definition = read_definition(sfn, str(described["stateMachineArn"]))
    return normalize_history(
        described, history_of(sfn, execution_arn), state_machine=state_machine, definition=definition,
        injections=injections, masks=masks,
    )  # fmt: skip


class HistoryReader(Protocol):
    """Where executions' histories are read from: the local engine's stack, or an AWS account."""

    @property
    def where(self) -> str:
        """Where, for people: the local engine, AWS."""
        ...

    def find(self, ref: str) -> str:
        """The ARN of the execution ``ref`` names (its ARN or its name)."""
        ...

    def read(self, execution_arn: str, masks: Sequence[str] = ()) -> dict[str, Any]:
        """The execution's normalized history."""
        ...


@dataclass(frozen=True)
class LocalHistories:
    """Histories of the executions of a stack on the local engine (with the faults it injected)."""

    stack: LocalStack
    region: str
    stack_name: str
    where: str = "the local engine"

    def find(self, ref: str) -> str:
        from sandbox.executions import find_execution

        return find_execution(self.stack, self.region, self.stack_name, ref)

    def read(self, execution_arn: str, masks: Sequence[str] = ()) -> dict[str, Any]:
        from sandbox.executions import machine_of_execution, name_of_arn
        from sandbox.faults import FaultsUnsupportedError, fault_book

        try:
            injections: list[dict[str, Any]] | None = fault_book(self.stack).injections(
                name_of_arn(execution_arn)
            )
        except FaultsUnsupportedError:  # LocalStack: no fault hook, so no telling what was injected
            injections = None
        machine = machine_of_execution(self.stack, self.region, self.stack_name, execution_arn)
        sfn: SFNClient = self.stack.client("stepfunctions", self.region)
        return read_history(sfn, execution_arn, state_machine=machine.label, injections=injections,
                            masks=masks)  # fmt: skip


@dataclass
class AwsHistories:
    """Histories of executions in an AWS account (or an AWS-compatible endpoint): no injected faults
    are known there (an FIS experiment does not say which attempt it broke)."""

    target: AwsTarget
    where: str = "AWS"
    _session: Any = None

    def _client(self, service: str) -> Any:
        if self._session is None:
            from sandbox.aws import AwsSession

            self._session = AwsSession(self.target)
        return self._session.client(service)

    def _machines(self) -> dict[str, str]:
        """The AWS stack's state machines, ARN -> logical id (none when the stack is not there)."""
        from botocore.exceptions import ClientError

        from sandbox.executions import state_machines_of

        try:
            machines = state_machines_of(self._client("cloudformation"), self.target.stack_name)
        except ClientError:
            return {}
        return {machine.arn: str(machine.logical_id) for machine in machines}

    def find(self, ref: str) -> str:
        from botocore.exceptions import ClientError

        from sandbox.executions import ExecutionNotFoundError, is_execution_arn

        if is_execution_arn(ref):
            return ref
        sfn = self._client("stepfunctions")
        for machine_arn in self._machines():
            arn = machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{ref}"
            try:
                sfn.describe_execution(executionArn=arn)
            except ClientError:
                continue
            return arn
        raise ExecutionNotFoundError(
            f"no execution named {ref!r} in the state machines of the AWS stack {self.target.stack_name}",
            hint="give the execution's ARN (the Step Functions console shows it)",
        )

    def read(self, execution_arn: str, masks: Sequence[str] = ()) -> dict[str, Any]:
        from sandbox.executions import name_of_arn

        machine_arn = execution_arn.replace(":execution:", ":stateMachine:", 1).rsplit(":", 1)[0]
        label = self._machines().get(machine_arn) or name_of_arn(machine_arn)
        return read_history(self._client("stepfunctions"), execution_arn, state_machine=label, masks=masks)


# ------------------------------------------------------------------ files


def histories_folder(project_dir: Path) -> Path:
    """Where a project keeps its saved histories: ``histories/`` beside its template."""
    return project_dir / HISTORIES_FOLDER


def history_path(folder: Path, name: str) -> Path:
    """The file of the saved history ``name`` (letters, digits, ``.``, ``_`` and ``-``)."""
    if not NAME.fullmatch(name) or name.endswith(".json"):
        raise UsageError(
            f"history name {name!r}: use letters, digits, '.', '_' and '-'",
            hint="e.g. --as happy-path; to write elsewhere give --output FILE",
        )
    return folder / f"{name}.json"


def save_history(document: dict[str, Any], path: Path) -> Path:
    """Write a history as stable, readable JSON (one key order, a newline at the end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def load_history(path: Path) -> dict[str, Any]:
    """A saved history (HistoryNotFoundError when there is none, UsageError when it is not one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise HistoryNotFoundError(
            f"no saved history {path}", hint="save one with `sandbox history save EXECUTION --as NAME`"
        ) from error
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        document = json.loads(text)
    except ValueError as error:
        raise UsageError(
            f"{path} is not JSON: {error}", hint="save it again with `sandbox history save`"
        ) from error
    if not isinstance(document, dict) or "states" not in document:
        raise UsageError(f"{path} is not a saved history", hint="save one with `sandbox history save`")
    return document


def saved_history_file(ref: str, folder: Path) -> Path | None:
    """The saved history ``ref`` names (a file's path, or a name in ``folder``), if there is one."""
    path = Path(ref)
    if ref.endswith(".json") and path.is_file():
        return path
    if NAME.fullmatch(ref) and (folder / f"{ref}.json").is_file():
        return folder / f"{ref}.json"
    return None


# ------------------------------------------------------------------ diff


@dataclass(frozen=True)
class Difference:
    """One way two histories differ: what kind, at which state, and a line that says it."""

    kind: str  # path, status, attempts, attempt, catch, compensation, input, output, error, faults
    message: str
    state: str | None = None
    path: str | None = None
    expected: Any = None
    actual: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": self.state, "path": self.path, "message": self.message,
                "expected": self.expected, "actual": self.actual}  # fmt: skip


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value_differences(expected: Any, actual: Any, path: str = "$") -> list[tuple[str, Any, Any]]:
    """Where two JSON values differ: (JSON path, expected, actual); a missing side is ``...``."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in [*expected, *(key for key in actual if key not in expected)]:
            child = (
                f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)) else f"{path}[{key!r}]"
            )
            if key not in actual:
                found.append((child, expected[key], ...))
            elif key not in expected:
                found.append((child, ..., actual[key]))
            else:
                found += value_differences(expected[key], actual[key], child)
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (a, b) in enumerate(zip(expected, actual, strict=True))
                for d in value_differences(a, b, f"{path}[{i}]")]  # fmt: skip
    return [] if expected == actual else [(path, expected, actual)]


def _failure_words(error: Any, cause: Any) -> str:
    message = cause.get("errorMessage") if isinstance(cause, dict) else cause
    return f"{error or 'an error'}" + (f" ({_short(message, 80)})" if message else "")


def _attempt_words(attempt: dict[str, Any]) -> str:
    if attempt.get("status") == "SUCCEEDED":
        return "succeeded"
    verb = "timed out" if attempt.get("status") == "TIMED_OUT" else "failed"
    return f"{verb} with {_failure_words(attempt.get('error'), attempt.get('cause'))}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _data_differences(
    kind: str, where: str, state: str | None, expected: Any, actual: Any, seen: set[str] | None = None
) -> list[Difference]:
    """Where the data differ; a difference already in ``seen`` (the same path, the same two values,
    carried on from an earlier state) is not said again."""
    found = value_differences(expected, actual)
    if seen is not None:
        keys = [
            json.dumps([path, a is ..., a, b is ..., b], sort_keys=True, default=str) for path, a, b in found
        ]
        found = [difference for difference, key in zip(found, keys, strict=True) if key not in seen]
        seen.update(keys)
    differences = []
    for path, a, b in found[:MAX_VALUE_DIFFS]:
        if b is ...:
            said = f"removed (expected {_short(a)})"
        elif a is ...:
            said = f"{_short(b)}, added"
        else:
            said = f"{_short(b)}, expected {_short(a)}"
        differences.append(
            Difference(
                kind, f"{where} {path}: {said}", state, path, None if a is ... else a, None if b is ... else b
            )
        )
    if len(found) > MAX_VALUE_DIFFS:
        differences.append(
            Difference(kind, f"{where}: and {len(found) - MAX_VALUE_DIFFS} more differences", state)
        )
    return differences


def _catch_words(catch: dict[str, Any] | None) -> str:
    if not catch:
        return "no Catch"
    matched = f" [{catch['matched']}]" if catch.get("matched") else ""
    return f"Catch {catch.get('error')}{matched} → {catch.get('next')}"


def _outcome(attempt: dict[str, Any]) -> tuple[Any, Any, Any]:
    return attempt.get("status"), attempt.get("error"), attempt.get("cause")


def _attempts_differences(
    name: str, tries_a: list[dict[str, Any]], tries_b: list[dict[str, Any]]
) -> list[Difference]:
    found = [
        Difference(
            "attempt",
            f"{name} attempt {number}: {_attempt_words(y)}, expected {_attempt_words(x)}",
            name, f"attempts[{number - 1}]", x, y,
        )
        for number, (x, y) in enumerate(zip(tries_a, tries_b, strict=False), start=1)
        if _outcome(x) != _outcome(y)
    ]  # fmt: skip
    change = len(tries_b) - len(tries_a)
    if change:
        retries = "retry" if abs(change) == 1 else "retries"
        what = f"{change} extra {retries}" if change > 0 else f"{-change} {retries} fewer"
        longer = tries_b if change > 0 else tries_a
        shared = min(len(tries_a), len(tries_b))
        which = "; ".join(f"attempt {i} {_attempt_words(t)}" for i, t in enumerate(longer, 1) if i > shared)
        message = (
            f"{name}: {_plural(len(tries_b), 'attempt')}, expected {len(tries_a)} "
            f"({what}; {'extra' if change > 0 else 'missing'}: {which})"
        )
        found.append(Difference("attempts", message, name, "attempts", len(tries_a), len(tries_b)))
    return found


def _state_differences(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    name = str(a["name"])
    found: list[Difference] = []
    if a.get("status") != b.get("status"):
        message = f"{name}: {b.get('status')}, expected {a.get('status')}"
        found.append(Difference("status", message, name, None, a.get("status"), b.get("status")))
    tries_a, tries_b = list(a.get("attempts") or []), list(b.get("attempts") or [])
    found += _attempts_differences(name, tries_a, tries_b)
    # A state without attempts (a Fail, a Parallel) says its error itself.
    if not tries_a and not tries_b and (a.get("error"), a.get("cause")) != (b.get("error"), b.get("cause")):
        was, now = (
            _failure_words(a.get("error"), a.get("cause")),
            _failure_words(b.get("error"), b.get("cause")),
        )
        found.append(
            Difference("error", f"{name}: {now}, expected {was}", name, None, a.get("error"), b.get("error"))
        )
    if a.get("catch") != b.get("catch"):
        message = f"{name}: {_catch_words(b.get('catch'))}, expected {_catch_words(a.get('catch'))}"
        found.append(Difference("catch", message, name, "catch", a.get("catch"), b.get("catch")))
    if bool(a.get("isCompensation")) != bool(b.get("isCompensation")):
        now = "a compensation" if b.get("isCompensation") else "not a compensation"
        found.append(Difference("compensation", f"{name}: {now}, expected the other", name))
    return found


def _route(states: list[dict[str, Any]]) -> str:
    return " → ".join(str(state["name"]) for state in states) or "nothing"


def _execution_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[Difference]:
    found = []
    for key in ("status", "error"):
        if expected.get(key) != actual.get(key):
            message = f"execution {key}: {actual.get(key)}, expected {expected.get(key)}"
            found.append(Difference("execution", message, None, key, expected.get(key), actual.get(key)))
    if expected.get("cause") != actual.get("cause") and expected.get("error") == actual.get("error"):
        message = f"execution cause: {_short(actual.get('cause'))}, expected {_short(expected.get('cause'))}"
        found.append(
            Difference("execution", message, None, "cause", expected.get("cause"), actual.get("cause"))
        )
    return found


def diff_histories(expected: dict[str, Any], actual: dict[str, Any]) -> list[Difference]:
    """How ``actual`` differs from ``expected``: empty when they tell the same history."""
    found = _execution_differences(expected, actual)
    seen: set[str] = set()
    found += _data_differences(
        "input", "execution input", None, expected.get("input"), actual.get("input"), seen
    )
    states_a, states_b = list(expected.get("states") or []), list(actual.get("states") or [])
    keys_a = [(state["name"], state.get("depth", 0)) for state in states_a]
    keys_b = [(state["name"], state.get("depth", 0)) for state in states_b]
    # What the last state passed on, on each side: a state's input that is just that is not
    # reported again (a changed output would show on every state after it).
    passed: tuple[Any, Any] = (expected.get("input"), actual.get("input"))
    matcher = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            before = states_a[i1 - 1]["name"] if i1 > 0 else None
            message = (
                f"path diverged {f'after {before}' if before else 'at the start'}: "
                f"{_route(states_b[j1:j2])}, expected {_route(states_a[i1:i2])}"
            )
            routes = ([s["name"] for s in states_a[i1:i2]], [s["name"] for s in states_b[j1:j2]])
            found.append(Difference("path", message, before, None, *routes))
            passed = (
                states_a[i2 - 1].get("output") if i2 > 0 else expected.get("input"),
                states_b[j2 - 1].get("output") if j2 > 0 else actual.get("input"),
            )
            continue
        for a, b in zip(states_a[i1:i2], states_b[j1:j2], strict=True):
            name = str(a["name"])
            found += _state_differences(a, b)
            if (a.get("input"), b.get("input")) != passed:
                found += _data_differences(
                    "input", f"{name} input", name, a.get("input"), b.get("input"), seen
                )
            found += _data_differences(
                "output", f"{name} output", name, a.get("output"), b.get("output"), seen
            )
            passed = (a.get("output"), b.get("output"))
    if (expected.get("output"), actual.get("output")) != passed:
        found += _data_differences(
            "output", "execution output", None, expected.get("output"), actual.get("output"), seen
        )
    faults_a, faults_b = expected.get("injectedFaults"), actual.get("injectedFaults")
    if faults_a is not None and faults_b is not None and faults_a != faults_b:
        message = f"injected faults: {_faults_words(faults_b)}, expected {_faults_words(faults_a)}"
        found.append(Difference("faults", message, None, "injectedFaults", faults_a, faults_b))
    return found


def _faults_words(faults: list[dict[str, Any]]) -> str:
    return (
        ", ".join(f"{f.get('kind')} on {f.get('state')} attempt {f.get('attempt')}" for f in faults) or "none"
    )


def diff_notes(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """What differs without making them different histories (which state machine, which faults were known)."""
    notes = []
    if expected.get("stateMachine") != actual.get("stateMachine"):
        notes.append(f"state machines: {actual.get('stateMachine')}, expected {expected.get('stateMachine')}")
    for label, document in (("expected", expected), ("actual", actual)):
        if document.get("injectedFaults") is None:
            notes.append(f"the {label} history's engine does not say which faults it injected: not compared")
    return notes


def render_diff(
    differences: Sequence[Difference], *, expected: str, actual: str, notes: Sequence[str] = ()
) -> str:
    """The differences as lines a person reads (the same histories: one line that says so)."""
    lines = [f"--- expected: {expected}", f"+++ actual:   {actual}"]
    if not differences:
        lines.append("the histories are the same")
    else:
        lines.append(f"{_plural(len(differences), 'difference')}:")
        lines += [f"  ✗ {difference.message}" for difference in differences]
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_history(document: dict[str, Any]) -> str:
    """A saved or read history as lines: each state, its attempts and Catch, the end."""
    lines = [f"history of {document.get('stateMachine')}: {document.get('status')}"]
    for state in document.get("states") or []:
        marker = "↩" if state.get("isCompensation") else ("✗" if state.get("status") == "FAILED" else "→")
        attempts = state.get("attempts") or []
        tries = f"  {_plural(len(attempts), 'attempt')}" if attempts else ""
        lines.append(
            f"  {'  ' * int(state.get('depth') or 0)}{marker} {state['name']}  {state.get('status')}{tries}"
        )
        if len(attempts) > 1 or any(attempt.get("status") != "SUCCEEDED" for attempt in attempts):
            lines += [f"      attempt {i}: {_attempt_words(t)}" for i, t in enumerate(attempts, start=1)]
        if state.get("catch"):
            lines.append(f"      ⤷ {_catch_words(state['catch'])}")
    error = document.get("error")
    ending = f" — {_failure_words(error, document.get('cause'))}" if error else ""
    lines.append(f"execution {document.get('status')}{ending}")
    faults = document.get("injectedFaults")
    if faults:
        lines.append(f"injected faults: {_faults_words(faults)}")
    if document.get("masks"):
        lines.append(f"masked: {', '.join(document['masks'])}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ snapshot assertion


def execution_ref(execution: Any) -> str:
    """An execution's ARN or name from what a test holds: the text, an ``Execution``, an order's result."""
    if isinstance(execution, str):
        return execution
    inner = getattr(execution, "execution", None)  # an OrderResult: its saga's execution
    if inner is not None and hasattr(inner, "arn"):
        return str(inner.arn)
    if hasattr(execution, "arn"):
        return str(execution.arn)
    raise TypeError(f"not an execution: {execution!r} (give its ARN or name, or an Execution)")


@dataclass
class HistoryCheck:
    """``check(execution, NAME)``: the execution's history equals the saved ``NAME`` (or, updating, becomes it)."""

    reader: HistoryReader
    folder: Path
    update: bool = False
    written: list[Path] = field(default_factory=list)

    def __call__(self, execution: Any, name: str, *, mask: Sequence[str] | None = None) -> dict[str, Any]:
        """Compare the execution's normalized history with ``histories/NAME.json``; return the history.

        ``mask`` names JSON paths of the data to hide; without it, the saved history's own masks.
        Without a saved history, or when they differ, raise HistoryMismatchError with the diff,
        unless updating: then the history is (re)written and the check passes.
        """
        path = history_path(self.folder, name)
        saved = load_history(path) if path.is_file() else None
        masks = list(mask) if mask is not None else list((saved or {}).get("masks") or [])
        reader = self.reader
        arn = reader.find(execution_ref(execution))
        actual = reader.read(arn, masks)
        if self.update:
            if saved != actual:
                save_history(actual, path)
                self.written.append(path)
            return actual
        if saved is None:
            raise HistoryMismatchError(
                f"no saved history {path}: record it with `pytest {UPDATE_FLAG}` "
                f"(or `sandbox history save {arn} --as {name}`)"
            )
        differences = diff_histories(saved, actual)
        if differences:
            text = render_diff(differences, expected=str(path), actual=f"execution {arn}",
                               notes=diff_notes(saved, actual))  # fmt: skip
            raise HistoryMismatchError(
                f"history {name} differs from its saved one\n{text}"
                f"if the change is intended, re-record it: pytest {UPDATE_FLAG}"
            )
        return actual
