"""Faults at the Lambda invoke boundary: rules the sandbox sets, applied where every caller invokes.

Step Functions tasks, stream mappings, API integrations, EventBridge targets and ``Invoke`` all
reach the engine's ``_execute_function``; a rule there breaks an invocation without touching the
function, as AWS FIS's Lambda actions do. A rule targets a Task state (by name), a function (by
name) or a stream mapping (by UUID), and is one of:

- ``error``: the invocation fails before the handler runs (no effect);
- ``error-after``: the handler runs, its effect lands, and the caller gets an error;
- ``delay``: the invocation starts ``delayMs`` late;
- ``timeout``: the attempt outlives the Task's ``TimeoutSeconds`` (or the function's ``Timeout``)
  and then completes late;
- ``throttle``: refused as Lambda refuses it (``Lambda.TooManyRequestsException``);
- ``http-response``: an API integration answers ``status`` (the handler does not run);
- ``crash``: the handler runs, then its worker dies before answering (``Runtime.ExitError``);
- ``cold-start``: the invocation runs in a new execution environment started from nothing (a
  process of its own that imports everything and runs the function's init, not a fork of a
  pre-imported parent): the whole cold start AWS gives a function's first invocation;
- on a stream mapping: ``duplicate-delivery`` (a delivered batch is delivered again),
  ``delayed-delivery`` (``delayMs`` late), ``poison`` (the record's image is unreadable).

A rule applies on chosen attempts (a Task's retry, a stream record's redelivery, otherwise the
rule's own count of invocations it matched), to one execution by name or to records whose keys
contain a text, to a percentage of invocations drawn from a seeded generator, until it expires.
With no rule set an invocation costs one truth test. The sandbox drives the rules over HTTP
(``/_sandbox/faults``), and reads back every injection it made.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import CLOCK
from .routes import App, with_json_route
from .streams import STREAM_DELIVERY
from .timeouts import signal_handler_start
from .zygotes import FROM_SCRATCH

KINDS = (
    "error",
    "error-after",
    "delay",
    "timeout",
    "throttle",
    "http-response",
    "crash",
    "cold-start",
    "duplicate-delivery",
    "delayed-delivery",
    "poison",
)
STREAM_KINDS = frozenset({"duplicate-delivery", "delayed-delivery", "poison"})
TARGET_KINDS = ("state", "function", "mapping")
DEFAULT_ERROR = "InjectedFault"
THROTTLE_ERROR = "Lambda.TooManyRequestsException"
TIMEOUT_ERROR = "Sandbox.Timedout"
CRASH_ERROR = "Runtime.ExitError"
# How far past the deadline a timed-out attempt completes.
TIMEOUT_MARGIN_SECONDS = 0.5
MAX_INJECTIONS_KEPT = 20_000
ROUTE = "/_sandbox/faults"


class FaultRuleError(ValueError):
    """A rule the engine cannot apply (its message says which field and why)."""


@dataclass(frozen=True)
class TaskCall:
    """The Step Functions Task invoking a function: its state, execution and retry count."""

    state: str
    state_machine: str
    execution: str
    context: dict[str, Any]  # the engine's $$ object: the state's RetryCount changes in place
    timeout_seconds: float | None

    @property
    def attempt(self) -> int:
        return int((self.context.get("State") or {}).get("RetryCount") or 0) + 1


TASK_CALL: contextvars.ContextVar[TaskCall | None] = contextvars.ContextVar("sandbox_task_call", default=None)
# Set while a fault decision is made and applied: the engine re-enters its own invoke path (to
# set the account scope), and that inner call must not be faulted a second time.
_DECIDING: contextvars.ContextVar[bool] = contextvars.ContextVar("sandbox_fault_deciding", default=False)
# Set by a crash rule for the worker that serves the invocation: killed once it answered.
CRASHING: contextvars.ContextVar[bool] = contextvars.ContextVar("sandbox_fault_crashing", default=False)
COLD_STARTING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sandbox_fault_cold_start", default=False
)


def _positive_int(rule: dict[str, Any], name: str, *, minimum: int = 0) -> int | None:
    value = rule.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultRuleError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return value


@dataclass
class FaultRule:
    """One rule, as the engine applies it."""

    id: str
    target: dict[str, str]
    kind: str
    label: str
    first_attempt: int = 1
    last_attempt: int | None = None
    execution: str | None = None
    record: str | None = None
    percent: float = 100.0
    seed: int | None = None
    expires_at: float | None = None
    error: str | None = None
    cause: str | None = None
    delay_ms: int = 0
    status: int | None = None
    run_handler: bool = False
    matched: int = 0
    injected: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def parse(cls, raw: Any, rule_id: str, now: float) -> FaultRule:
        """A rule from its JSON form; FaultRuleError names what is wrong."""
        if not isinstance(raw, dict):
            raise FaultRuleError(f"a rule is a JSON object, not {type(raw).__name__}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise FaultRuleError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        target = raw.get("target")
        if (
            not isinstance(target, dict)
            or len(target) != 1
            or next(iter(target)) not in TARGET_KINDS
            or not isinstance(next(iter(target.values())), str)
            or not next(iter(target.values()))
        ):
            raise FaultRuleError(f"target must be one of {{{'|'.join(TARGET_KINDS)}: NAME}}, not {target!r}")
        if kind in STREAM_KINDS and "state" in target:
            raise FaultRuleError(f"{kind} applies to a stream mapping or its function, not to a state")
        attempts = raw.get("attempts") or [1, None]
        if not (isinstance(attempts, list) and len(attempts) == 2):
            raise FaultRuleError(f"attempts must be [FIRST, LAST or null], not {attempts!r}")
        first = _positive_int({"attempts": attempts[0]}, "attempts", minimum=1) or 1
        last = _positive_int({"attempts": attempts[1]}, "attempts", minimum=first)
        percent = raw.get("percent", 100)
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 100:
            raise FaultRuleError(f"percent must be above 0 and at most 100, not {percent!r}")
        duration = raw.get("durationSeconds")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0
        ):
            raise FaultRuleError(f"durationSeconds must be a positive number, not {duration!r}")
        delay_ms = _positive_int(raw, "delayMs") or 0
        if kind in ("delay", "delayed-delivery") and delay_ms <= 0:
            raise FaultRuleError(f"{kind} needs delayMs, a positive whole number of milliseconds")
        status = _positive_int(raw, "status", minimum=100)
        if kind == "http-response" and (status is None or status > 599):
            raise FaultRuleError(
                f"http-response needs status, an HTTP status code, not {raw.get('status')!r}"
            )
        seed = _positive_int(raw, "seed")
        run_handler = raw.get("runHandler", False)
        if not isinstance(run_handler, bool) or (run_handler and kind != "http-response"):
            raise FaultRuleError("runHandler is true or false, and only for http-response")
        texts = {name: raw.get(name) for name in ("execution", "record", "error", "cause", "label")}
        for name, value in texts.items():
            if value is not None and (not isinstance(value, str) or not value):
                raise FaultRuleError(f"{name} must be a non-empty string, not {value!r}")
        rule = cls(
            id=rule_id,
            target={str(k): str(v) for k, v in target.items()},
            kind=str(kind),
            label=texts["label"] or next(iter(target.values())),
            first_attempt=first,
            last_attempt=last,
            execution=texts["execution"],
            record=texts["record"],
            percent=float(percent),
            seed=seed,
            expires_at=now + float(duration) if duration is not None else None,
            error=texts["error"],
            cause=texts["cause"],
            delay_ms=delay_ms,
            status=status,
            run_handler=run_handler,
        )
        rule._random = random.Random(seed)
        return rule

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": dict(self.target),
            "label": self.label,
            "kind": self.kind,
            "attempts": [self.first_attempt, self.last_attempt],
            "execution": self.execution,
            "record": self.record,
            "percent": self.percent,
            "seed": self.seed,
            "expiresInSeconds": None
            if self.expires_at is None
            else round(max(0.0, self.expires_at - now), 3),
            "error": self.error,
            "cause": self.cause,
            "delayMs": self.delay_ms,
            "status": self.status,
            "runHandler": self.run_handler,
            "matched": self.matched,
            "injected": self.injected,
        }

    def selects(self, function_name: str, task: TaskCall | None, delivery: Any, event: Any) -> int | None:
        """The attempt this invocation is to the rule, when the rule's target and scope select it."""
        ((target_kind, name),) = self.target.items()
        if target_kind == "state" and (task is None or task.state != name):
            return None
        if target_kind == "function" and function_name != name:
            return None
        if target_kind == "mapping" and (delivery is None or delivery.mapping != name):
            return None
        if self.kind in STREAM_KINDS and delivery is None:
            return None
        if self.execution is not None and (task is None or task.execution != self.execution):
            return None
        if self.record is not None and not _matching_records(event, self.record, delivery):
            return None
        if task is not None:
            attempt = task.attempt
        elif delivery is not None:
            attempt = int(delivery.attempt)
        else:
            attempt = self.matched + 1
        self.matched += 1
        return attempt

    def is_on(self, attempt: int) -> bool:
        """Whether the rule fires on this attempt (its range, then its percentage)."""
        if attempt < self.first_attempt or (self.last_attempt is not None and attempt > self.last_attempt):
            return False
        return self.percent >= 100 or self._random.random() * 100 < self.percent


def _records(event: Any) -> list[dict[str, Any]]:
    records = event.get("Records") if isinstance(event, dict) else None
    return [record for record in records or [] if isinstance(record, dict)]


def _record_keys(record: dict[str, Any]) -> str:
    return json.dumps((record.get("dynamodb") or {}).get("Keys") or record.get("messageId") or "")


def _key_parts(record: dict[str, Any]) -> set[str]:
    """A record's key values, and their ``#``-separated parts (``OUTBOX#42`` -> itself, OUTBOX, 42)."""
    keys = (record.get("dynamodb") or {}).get("Keys") or {}
    parts: set[str] = set()
    for value in keys.values():
        text = str(next(iter(value.values()))) if isinstance(value, dict) and value else str(value)
        parts.add(text)
        parts.update(text.split("#"))
    if record.get("messageId"):
        parts.add(str(record["messageId"]))
    return parts


def _matching_records(event: Any, text: str, delivery: Any) -> list[dict[str, Any]]:
    if delivery is None:
        return []
    return [record for record in _records(event) if text in _key_parts(record)]


class FaultBook:
    """The rules in force and the injections they made, shared by every invoking thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.rules: list[FaultRule] = []  # read without the lock: a list is replaced, never mutated
        # Rules scoped to one execution or record, by its name: a run of thousands of orders, each
        # with a rule of its own, costs an invocation a lookup rather than a scan.
        self._by_execution: dict[str, list[FaultRule]] = {}
        self._by_record: dict[str, list[FaultRule]] = {}
        self._unscoped: list[FaultRule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._injections: deque[dict[str, Any]] = deque(maxlen=MAX_INJECTIONS_KEPT)
        self._clock = clock

    def add(self, raw_rules: Any) -> list[dict[str, Any]]:
        """Add every rule, or none when one is invalid (FaultRuleError)."""
        if not isinstance(raw_rules, list) or not raw_rules:
            raise FaultRuleError('send {"rules": [RULE, ...]} with at least one rule')
        now = self._clock()
        with self._lock:
            parsed = []
            for index, raw in enumerate(raw_rules):
                try:
                    parsed.append(FaultRule.parse(raw, f"f{next(self._ids)}", now))
                except FaultRuleError as error:
                    raise FaultRuleError(f"rule {index + 1}: {error}") from None
            self._set_rules([*self.rules, *parsed])
        return [rule.to_json(now) for rule in parsed]

    def _set_rules(self, rules: list[FaultRule]) -> None:
        by_execution: dict[str, list[FaultRule]] = {}
        by_record: dict[str, list[FaultRule]] = {}
        unscoped: list[FaultRule] = []
        for rule in rules:
            if rule.execution is not None:
                by_execution.setdefault(rule.execution, []).append(rule)
            elif rule.record is not None:
                by_record.setdefault(rule.record, []).append(rule)
            else:
                unscoped.append(rule)
        self._by_execution, self._by_record, self._unscoped = by_execution, by_record, unscoped
        self.rules = rules

    def clear(self, rule_ids: list[str] | None = None) -> int:
        """Remove these rules (by id) or all of them; how many were removed."""
        with self._lock:
            wanted = None if rule_ids is None else set(rule_ids)
            kept = [rule for rule in self.rules if wanted is not None and rule.id not in wanted]
            removed = len(self.rules) - len(kept)
            self._set_rules(kept)
            if rule_ids is None:
                self._injections.clear()
        return removed

    def listed(self) -> list[dict[str, Any]]:
        now = self._clock()
        self._expire(now)
        return [rule.to_json(now) for rule in self.rules]

    def injections(self, execution: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            kept = list(self._injections)
        return [entry for entry in kept if execution is None or entry.get("execution") == execution]

    def _expire(self, now: float) -> None:
        if any(rule.expires_at is not None and rule.expires_at <= now for rule in self.rules):
            with self._lock:
                self._set_rules(
                    [rule for rule in self.rules if rule.expires_at is None or rule.expires_at > now]
                )

    def _candidates(self, task: TaskCall | None, delivery: Any, event: Any) -> list[FaultRule]:
        """The rules that may select this invocation, in the order they were added."""
        found = list(self._unscoped)
        if task is not None:
            found += self._by_execution.get(task.execution, [])
        if delivery is not None and self._by_record:
            parts = set().union(*(_key_parts(record) for record in _records(event)))
            for part in parts & self._by_record.keys():
                found += self._by_record[part]
        return sorted(found, key=lambda rule: int(rule.id[1:])) if len(found) > 1 else found

    def choose(self, function_name: str, event: Any) -> tuple[FaultRule, int, list[FaultRule]] | None:
        """The first rule that fires on this invocation, the attempt it fires on, and the poison rules
        that fire on the same delivery besides it (each poisons its own records of the batch)."""
        now = self._clock()
        self._expire(now)
        task, delivery = TASK_CALL.get(), STREAM_DELIVERY.get()
        first: tuple[FaultRule, int] | None = None
        also: list[FaultRule] = []
        with self._lock:  # a rule's counters and its seeded draws are taken in invocation order
            for rule in self._candidates(task, delivery, event):
                # One rule decides the delivery; poison rules of other records of the batch add to
                # it (a record stays unreadable whatever else happens to its batch).
                if first is not None and rule.kind != "poison":
                    continue
                attempt = rule.selects(function_name, task, delivery, event)
                if attempt is None or not rule.is_on(attempt):
                    continue
                rule.injected += 1
                self._injections.append(
                    {
                        "rule": rule.id,
                        "kind": rule.kind,
                        "error": rule.error,
                        "target": rule.label,
                        "function": function_name,
                        "state": task.state if task else None,
                        "stateMachine": task.state_machine if task else None,
                        "execution": task.execution if task else None,
                        "mapping": delivery.mapping if delivery else None,
                        "attempt": attempt,
                        "records": [_record_keys(r) for r in _selected_records(event, [rule])]
                        if delivery
                        else [],
                        "at": now,
                    }
                )
                if first is None:
                    first = (rule, attempt)
                else:
                    also.append(rule)
        return None if first is None else (first[0], first[1], also)


BOOK = FaultBook()


class _Count:
    """Invocations a timeout rule holds: they land after their caller gave up (a run is quiet at 0)."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.value += 1

    def leave(self) -> None:
        with self._lock:
            self.value -= 1


LATE = _Count()


def _note(rule: FaultRule, attempt: int) -> str:
    return f"[sandbox fault] rule {rule.id} injected {rule.kind} on {rule.label} (attempt {attempt})"


def _error_result(error_type: str, message: str, log: str) -> dict[str, Any]:
    return {"error": True, "body": {"errorType": error_type, "errorMessage": message}, "log": log}


def _joined(*logs: Any) -> str:
    return "\n".join(str(log) for log in logs if log)


def _selected_records(event: Any, rules: list[FaultRule]) -> list[dict[str, Any]]:
    """The records of a delivery that these rules select (all of them for a rule without a record)."""
    return [
        record
        for record in _records(event)
        if any(rule.record is None or rule.record in _key_parts(record) for rule in rules)
    ]


def _poisoned(event: dict[str, Any], rules: list[FaultRule]) -> dict[str, Any]:
    """The event with the selected records' non-key image attributes made unreadable."""
    selected = [id(record) for record in _selected_records(event, rules)]
    records = []
    for record in _records(event):
        if id(record) in selected:
            stream = dict(record.get("dynamodb") or {})
            keys = set((stream.get("Keys") or {}).keys())
            image = stream.get("NewImage") or {}
            stream["NewImage"] = {
                name: value if name in keys else {"N": "not-a-number{"} for name, value in image.items()
            }
            record = {**record, "dynamodb": stream}
        records.append(record)
    return {**event, "Records": records}


def _function_timeout(func: dict[str, Any]) -> float:
    config = func.get("config") or func
    return float(config.get("Timeout") or 3)


def apply_rule(
    rule: FaultRule,
    attempt: int,
    execute: Callable[..., dict[str, Any]],
    func: dict[str, Any],
    event: Any,
    also: list[FaultRule] | None = None,
) -> dict[str, Any]:
    """Invoke (or not) as the rule says, and answer what the caller gets (``also``: more poison rules)."""
    note = _note(rule, attempt)
    if also and rule.kind != "poison":
        event = _poisoned(event, also)
    if rule.kind == "error":
        cause = rule.cause or f"injected by fault rule {rule.id}: the handler did not run"
        return _error_result(rule.error or DEFAULT_ERROR, cause, note)
    if rule.kind == "throttle":
        body = {
            "errorType": rule.error or THROTTLE_ERROR,
            "errorMessage": rule.cause or f"Rate Exceeded. (injected by fault rule {rule.id})",
            "__type": "TooManyRequestsException",
            "message": "Rate Exceeded.",
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
            "retryAfterSeconds": "1",
        }
        return {"throttle": True, "error": True, "body": body, "log": note}
    if rule.kind == "http-response":
        log = note
        if rule.run_handler:  # FIS's preventExecution false: the handler runs, its answer is replaced
            log = _joined(execute(func, event).get("log"), note)
        text = json.dumps({"message": rule.cause or f"injected by fault rule {rule.id}"})
        response = {"statusCode": rule.status, "headers": {"Content-Type": "application/json"}, "body": text}
        return {"body": response, "log": log}
    if rule.kind in ("delay", "delayed-delivery"):
        time.sleep(CLOCK.scaled(rule.delay_ms / 1000))  # a delay in saga time
        result = execute(func, event)
        return {**result, "log": _joined(note, result.get("log"))}
    if rule.kind == "poison":
        result = execute(func, _poisoned(event, [rule, *(also or [])]))
        return {**result, "log": _joined(note, result.get("log"))}
    if rule.kind == "duplicate-delivery":
        first = execute(func, event)
        if first.get("error"):
            return first
        again = execute(func, event)
        return {**again, "log": _joined(first.get("log"), note, again.get("log"))}
    if rule.kind == "timeout":
        return _timing_out(rule, note, execute, func, event)
    if rule.kind == "cold-start":
        result = _with_worker_flag(COLD_STARTING, execute, func, event)
        return {**result, "log": _joined(note, result.get("log"))}
    if rule.kind == "crash":
        result = _with_worker_flag(CRASHING, execute, func, event)
        message = (
            rule.cause or "Runtime exited with error: signal: killed (injected by fault rule " + rule.id + ")"
        )
        return _error_result(rule.error or CRASH_ERROR, message, _joined(result.get("log"), note))
    # error-after: the handler ran and its effect landed; the caller never sees its answer.
    result = execute(func, event)
    cause = rule.cause or f"injected by fault rule {rule.id}: the handler ran, its response was lost"
    return _error_result(rule.error or DEFAULT_ERROR, cause, _joined(result.get("log"), note))


def _with_worker_flag(
    flag: contextvars.ContextVar[bool],
    execute: Callable[..., dict[str, Any]],
    func: dict[str, Any],
    event: Any,
) -> dict[str, Any]:
    """Run the invocation telling its worker (``with_worker_faults``) what the rule asks of it."""
    token = flag.set(True)
    try:
        return execute(func, event)
    finally:
        flag.reset(token)


def _late_margin() -> float:
    """How long past its caller's deadline a timed-out attempt completes, on the saga clock.

    Never nothing (``max`` skips waits): the late completion must still come after the deadline.
    """
    return max(CLOCK.scaled(TIMEOUT_MARGIN_SECONDS), 0.05)


def _timing_out(
    rule: FaultRule, note: str, execute: Callable[..., dict[str, Any]], func: dict[str, Any], event: Any
) -> dict[str, Any]:
    """Outlive the caller's deadline, then complete late (the effect lands after the caller gave up)."""
    task = TASK_CALL.get()
    LATE.enter()
    if task is not None and task.timeout_seconds:
        try:
            signal_handler_start()  # the Task's clock starts now, and runs out while this waits
            # Past the Task's budget on the saga clock (what its timer waits), then a margin.
            time.sleep(CLOCK.budget(task.timeout_seconds) + _late_margin())
            result = execute(func, event)  # the Task has moved on; this answer is ignored
        finally:
            LATE.leave()
        return {**result, "log": _joined(note, result.get("log"))}
    limit = _function_timeout(func)
    time.sleep(CLOCK.budget(limit))
    context = contextvars.copy_context()

    def complete_late() -> None:
        try:
            context.run(execute, func, event)
        finally:
            LATE.leave()

    threading.Thread(target=complete_late, name="late-invocation", daemon=True).start()
    message = rule.cause or f"Task timed out after {limit:.2f} seconds (injected by fault rule {rule.id})"
    return _error_result(rule.error or TIMEOUT_ERROR, message, note)


def with_faults(
    execute: Callable[..., dict[str, Any]], book: FaultBook = BOOK
) -> Callable[..., dict[str, Any]]:
    """The engine's invoke path with the book's rules applied (one truth test when there are none)."""

    def run(func: dict[str, Any], event: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not book.rules or _DECIDING.get():
            return execute(func, event, *args, **kwargs)
        token = _DECIDING.set(True)
        try:
            config = func.get("config") or func
            chosen = book.choose(str(config.get("FunctionName", "")), event)
            if chosen is None:
                return execute(func, event, *args, **kwargs)
            rule, attempt, also = chosen
            return apply_rule(rule, attempt, lambda f, e: execute(f, e, *args, **kwargs), func, event, also)
        finally:
            _DECIDING.reset(token)

    return run


def with_task_calls(execute_task: Callable[..., Any]) -> Callable[..., Any]:
    """The engine's Task execution, telling the invoke path which state and execution invoke."""

    def run(state_def: dict[str, Any], raw_input: Any, execution: Any, ctx: dict[str, Any]) -> Any:
        timeout = state_def.get("TimeoutSeconds") if isinstance(state_def, dict) else None
        call = TaskCall(
            state=str((ctx.get("State") or {}).get("Name", "")),
            state_machine=str((ctx.get("StateMachine") or {}).get("Name", "")),
            execution=str((ctx.get("Execution") or {}).get("Name", "")),
            context=ctx,
            timeout_seconds=float(timeout) if isinstance(timeout, int | float) else None,
        )
        token = TASK_CALL.set(call)
        try:
            return execute_task(state_def, raw_input, execution, ctx)
        finally:
            TASK_CALL.reset(token)

    return run


def _stop_process(worker: Any) -> None:
    process = getattr(worker, "_proc", None)
    if process is not None:
        process.kill()
        process.wait()
        worker._proc = None


def with_worker_faults(invoke: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The worker side of two rules: a cold start's worker is replaced before it runs the invocation,
    by one started from nothing; a crash's worker dies once it answered (its next lease starts cold).
    """

    def invoke_with_faults(worker: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if COLD_STARTING.get():
            _stop_process(worker)
            token = FROM_SCRATCH.set(True)
            try:
                result = invoke(worker, *args, **kwargs)
            finally:
                FROM_SCRATCH.reset(token)
        else:
            result = invoke(worker, *args, **kwargs)
        if CRASHING.get():
            _stop_process(worker)
        return result

    return invoke_with_faults


# --------------------------------------------------------------------- the control route


def handle_request(book: FaultBook, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
    """One request to the fault route: (status, JSON answer)."""
    rest = path[len(ROUTE) :].strip("/")
    if method == "GET" and rest == "":
        return 200, {"rules": book.listed(), "lateInvocations": LATE.value}
    if method == "GET" and rest == "injections":
        execution = urllib.parse.parse_qs(query).get("execution", [None])[0]
        return 200, {"injections": book.injections(execution)}
    if method == "POST" and rest == "":
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return 400, {"message": "the body is not JSON"}
        try:
            return 200, {"rules": book.add(payload.get("rules") if isinstance(payload, dict) else None)}
        except FaultRuleError as error:
            return 400, {"message": str(error)}
    if method == "POST" and rest == "clear":  # several rules at once: {"ids": [...]}
        try:
            ids = json.loads(body or b"{}").get("ids")
        except (ValueError, AttributeError):
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return 400, {"message": 'send {"ids": [RULE_ID, ...]}'}
        return 200, {"cleared": book.clear(ids)}
    if method == "DELETE" and rest == "":
        return 200, {"cleared": book.clear()}
    if method == "DELETE" and rest:
        removed = book.clear([rest])
        return (200, {"cleared": removed}) if removed else (404, {"message": f"no fault rule {rest}"})
    return 404, {"message": f"no route {method} {path}"}


def with_fault_route(app: App, book: FaultBook = BOOK) -> App:
    """The engine's ASGI app, answering the fault route itself."""
    return with_json_route(
        app, ROUTE, lambda method, path, query, body: handle_request(book, method, path, query, body)
    )
