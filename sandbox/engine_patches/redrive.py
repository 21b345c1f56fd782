"""Step Functions' ``RedriveExecution`` in the engine, with AWS's rules, and the redrive fields AWS reports.

A FAILED, TIMED_OUT or ABORTED Standard execution restarts at the state it did not complete (the
last top-level ``<Type>StateEntered`` without its ``<Type>StateExited`` before the execution
ended), with the input that state had, on the definition the execution started with; the states
that succeeded are not run again. The history gets ``ExecutionRedriven`` (its ``redriveCount``)
and the new events after it; ``DescribeExecution`` reports ``redriveCount``, ``redriveDate``,
``redriveStatus`` and ``redriveStatusReason``, ``ListExecutions`` ``redriveCount`` and
``redriveDate`` (and takes ``redriveFilter``). A request that repeats one of the last 10 client
tokens of the execution within 15 minutes answers as the first did, without a second redrive.

Where it differs from AWS: a Parallel or inline Map state is rerun whole (AWS reruns only its
failed branches or iterations: the engine records no branch or iteration events to tell which
succeeded), and a Distributed Map's Map Run starts afresh; the EventBridge status event of a
redriven execution carries the engine's redrive fields (``redriveCount`` 0).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

REDRIVABLE_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
ENDING_EVENTS = frozenset({"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"})
REDRIVABLE_PERIOD_SECONDS = 14 * 24 * 60 * 60  # from the execution's stop
MAX_OPEN_SECONDS = 365 * 24 * 60 * 60  # from its start
# A redrive appends ExecutionRedriven and at least one more event under the 25,000-event history cap.
MAX_HISTORY_EVENTS = 24_999
CLIENT_TOKENS_KEPT = 10
CLIENT_TOKEN_SECONDS = 15 * 60
MAX_CLIENT_TOKEN_LENGTH = 64
DEFINITION_KEY = "sandboxDefinition"  # the definition an execution started with, in its record

NOT_REDRIVABLE = "NOT_REDRIVABLE"
REDRIVABLE = "REDRIVABLE"
REDRIVABLE_BY_MAP_RUN = "REDRIVABLE_BY_MAP_RUN"

Response = tuple[int, dict[str, str], bytes]


def seconds_of(stamp: Any) -> float | None:
    """An engine record's ISO timestamp as epoch seconds; None when absent or unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def refusal(record: Mapping[str, Any], machine: Mapping[str, Any] | None, now: float) -> str | None:
    """Why RedriveExecution refuses the execution (AWS's ``redriveStatusReason``); None when it may."""
    status = str(record.get("status"))
    if machine is None:
        return "State machine is in DELETING status"
    if record.get("sync") or machine.get("type") == "EXPRESS":
        return "Execution of an EXPRESS state machine cannot be redriven"
    if record.get("mapRunArn"):
        return "Execution is a child workflow of a Map Run: redrive its parent execution"
    if status not in REDRIVABLE_STATUSES:
        return f"Execution is {status} and cannot be redriven"
    events = record.get("events") or []
    if not any(event.get("type") in ENDING_EVENTS for event in events):
        # The run that ended it has not written its ending event yet.
        return "Execution is RUNNING and cannot be redriven"
    if len(events) >= MAX_HISTORY_EVENTS:
        return "Execution history event limit exceeded"
    started = seconds_of(record.get("startDate"))
    if started is not None and now - started > MAX_OPEN_SECONDS:
        return "Execution has exceeded the max execution time"
    stopped = seconds_of(record.get("stopDate"))
    if stopped is not None and now - stopped > REDRIVABLE_PERIOD_SECONDS:
        return "Execution redrivable period exceeded"
    return None


def redrive_fields(
    record: Mapping[str, Any], machine: Mapping[str, Any] | None, now: float
) -> dict[str, Any]:
    """The redrive fields DescribeExecution reports for the execution, as AWS names them."""
    fields: dict[str, Any] = {"redriveCount": int(record.get("redriveCount") or 0)}
    if record.get("redriveDate"):
        fields["redriveDate"] = record["redriveDate"]
    if record.get("mapRunArn") and str(record.get("status")) in REDRIVABLE_STATUSES:
        fields["redriveStatus"] = REDRIVABLE_BY_MAP_RUN
        return fields
    reason = refusal(record, machine, now)
    fields["redriveStatus"] = REDRIVABLE if reason is None else NOT_REDRIVABLE
    if reason is not None:
        fields["redriveStatusReason"] = reason
    return fields


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, Mapping):
            return value
    return {}


def restart_point(events: list[dict[str, Any]]) -> tuple[str | None, Any, str | None]:
    """Where a redrive starts: (the state not completed, its input, the last completed state).

    Only the events up to the execution's last ending event count: a state the engine finished after
    the execution was aborted was aborted on AWS, and reruns. The engine writes no events for the
    states inside a Parallel or Map, so every StateEntered here is a top-level state's.
    """
    last_end = max(
        (index for index, event in enumerate(events) if event.get("type") in ENDING_EVENTS), default=-1
    )
    open_state: tuple[str, Any] | None = None
    exited: str | None = None
    for event in events[: last_end + 1]:
        kind = str(event.get("type"))
        details = _details(event)
        if kind.endswith("StateEntered"):
            open_state = (str(details.get("name")), details.get("input"))
        elif kind.endswith("StateExited") and open_state is not None and details.get("name") == open_state[0]:
            open_state, exited = None, str(details.get("name"))
    if open_state is None:
        return None, None, exited
    return open_state[0], open_state[1], exited


class ClientTokens:
    """The last client tokens of each execution's redrives, for 15 minutes: a repeat answers as the first did."""

    def __init__(self, *, kept: int = CLIENT_TOKENS_KEPT, seconds: float = CLIENT_TOKEN_SECONDS):
        self.kept = kept
        self.seconds = seconds
        self._by_execution: dict[str, list[tuple[str, float, str]]] = {}  # token, used at, redriveDate
        self._lock = threading.Lock()

    def answer(self, execution_arn: str, token: str | None, now: float) -> str | None:
        """The redriveDate a repeated token was answered with; None for a new token."""
        if not token:
            return None
        with self._lock:
            for used, at, redrive_date in self._by_execution.get(execution_arn, []):
                if used == token and now - at <= self.seconds:
                    return redrive_date
        return None

    def remember(self, execution_arn: str, token: str | None, now: float, redrive_date: str) -> None:
        if not token:
            return
        with self._lock:
            tokens = self._by_execution.setdefault(execution_arn, [])
            tokens.append((token, now, redrive_date))
            del tokens[: -self.kept]

    def clear(self) -> None:
        with self._lock:
            self._by_execution.clear()


TOKENS = ClientTokens()
# Each execution's JSONata variables (``Assign``), kept by reference as its run assigns them, so a
# redrive starts with the variables the run had.
VARIABLES: dict[str, dict[str, Any]] = {}


def _is_execution_arn(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("arn:") and ":execution:" in value


def _successor(
    sfn: Any, definition: dict[str, Any], name: str | None, events: list[dict[str, Any]]
) -> tuple[str | None, Any]:
    """The state after the last one completed, and its input: an execution aborted between two states."""
    states = definition.get("States") or {}
    if name is None:
        return definition.get("StartAt"), None
    output = next(
        (
            _details(event).get("output")
            for event in reversed(events)
            if str(event.get("type")).endswith("StateExited") and _details(event).get("name") == name
        ),
        None,
    )
    state = states.get(name) or {}
    if state.get("Type") == "Choice":
        # A Choice decides again on the same input: it is pure.
        entered = next(
            (
                _details(event).get("input")
                for event in reversed(events)
                if str(event.get("type")).endswith("StateEntered") and _details(event).get("name") == name
            ),
            None,
        )
        _output, following = sfn._execute_choice(state, json.loads(entered or "{}"), {})
        return following, output
    return sfn._next_or_end(state), output


def run_redriven(
    sfn: Any, record: dict[str, Any], definition: dict[str, Any], start: str | None, state_input: Any
) -> None:
    """Walk the definition from ``start`` to the execution's end, as the engine's run does from StartAt."""
    execution = record
    exec_arn = str(execution["executionArn"])
    all_states = definition.get("States", {})
    try:
        original_input = json.loads(execution["input"])
    except (TypeError, ValueError):
        original_input = {}
    ctx: dict[str, Any] = {
        "QueryLanguage": definition.get("QueryLanguage", "JSONPath"),
        "Execution": {
            "Id": exec_arn,
            "Input": original_input,
            "Name": execution["name"],
            "StartTime": execution["startDate"],
            "RedriveCount": execution.get("redriveCount", 0),
            "RedriveTime": execution.get("redriveDate"),
        },
        "StateMachine": {
            "Id": execution["stateMachineArn"],
            "Name": str(execution["stateMachineArn"]).rsplit(":", 1)[-1],
        },
        "variables": VARIABLES.get(exec_arn, {}),
    }
    handlers: dict[str, Callable[..., Any]] = {
        "Pass": sfn._execute_pass,
        "Task": sfn._execute_task,
        "Choice": sfn._execute_choice,
        "Wait": sfn._execute_wait,
        "Parallel": sfn._execute_parallel,
        "Map": sfn._execute_map,
    }
    current_name, current_input = start, state_input
    try:
        while current_name and execution["status"] == "RUNNING":
            state_def = all_states.get(current_name)
            if not state_def:
                raise sfn._ExecutionError("States.Runtime", f"State '{current_name}' not found in definition")
            ctx["State"] = {"Name": current_name, "EnteredTime": sfn.now_iso(), "RetryCount": 0}
            state_type = state_def.get("Type")
            sfn._add_event(
                execution,
                f"{state_type}StateEntered",
                {"stateEnteredEventDetails": {"name": current_name, "input": json.dumps(current_input)}},
            )
            if state_type == "Succeed":
                current_input = sfn._apply_output_path(
                    state_def, sfn._apply_input_path(state_def, current_input, ctx), ctx
                )
                sfn._add_event(
                    execution,
                    "SucceedStateExited",
                    {"stateExitedEventDetails": {"name": current_name, "output": json.dumps(current_input)}},
                )
                current_name = None
                continue
            if state_type == "Fail":
                raise sfn._ExecutionError(*sfn._fail_state_error(state_def, current_input, ctx))
            handler = handlers.get(str(state_type))
            if handler is None:
                raise sfn._ExecutionError("States.Runtime", f"Unknown state type: {state_type}")
            if state_type in ("Task", "Parallel", "Map"):
                current_input, next_name = handler(state_def, current_input, execution, ctx)
            else:
                current_input, next_name = handler(state_def, current_input, ctx)
            sfn._add_event(
                execution,
                f"{state_type}StateExited",
                {"stateExitedEventDetails": {"name": current_name, "output": json.dumps(current_input)}},
            )
            current_name = next_name
        if execution["status"] == "RUNNING":
            output = json.dumps(current_input)
            execution["status"], execution["output"], execution["stopDate"] = (
                "SUCCEEDED",
                output,
                sfn.now_iso(),
            )
            sfn._add_event(
                execution, "ExecutionSucceeded", {"executionSucceededEventDetails": {"output": output}}
            )
            sfn._emit_execution_status_event(execution)
    except sfn._ExecutionError as error:
        sfn._fail_execution(execution, error.error, error.cause)
    except Exception as error:
        sfn.logger.exception("Unexpected error in redriven execution %s", exec_arn)
        sfn._fail_execution(execution, "States.Runtime", str(error))


def redrive_execution(sfn: Any, data: Mapping[str, Any], *, tokens: ClientTokens = TOKENS) -> Response:
    """The ``RedriveExecution`` action: restart the execution where it stopped, or refuse with AWS's error."""
    arn = data.get("executionArn")
    token = data.get("clientToken")
    if not arn:
        return _error(sfn, "ValidationException", "executionArn is required")
    if not _is_execution_arn(arn):
        return _error(sfn, "InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {arn}'")
    if token is not None and not (isinstance(token, str) and 1 <= len(token) <= MAX_CLIENT_TOKEN_LENGTH):
        return _error(sfn, "ValidationException", "clientToken must be between 1 and 64 characters")
    record = sfn._executions.get(arn)
    if record is None:
        return _error(sfn, "ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
    now = time.time()
    repeated = tokens.answer(arn, token, now)
    if repeated is not None:
        return _answer(sfn, {"redriveDate": repeated})
    machine = sfn._state_machines.get(record["stateMachineArn"])
    reason = refusal(record, machine, now)
    if reason is not None:
        return _error(sfn, "ExecutionNotRedrivable", f"{reason}: '{arn}'")
    definition = record.get(DEFINITION_KEY) or json.loads(machine["definition"])
    events = list(record["events"])
    start, start_input, completed = restart_point(events)
    if start is None:
        start, state_input = _successor(sfn, definition, completed, events)
    else:
        state_input = start_input
    try:
        parsed_input = (
            json.loads(state_input) if isinstance(state_input, str) else json.loads(record["input"])
        )
    except ValueError:
        parsed_input = {}
    redrive_date = sfn.now_iso()
    # A new record: a run still finishing its state after an abort keeps writing to the old one, and
    # stops there (its loop reads the old record's status), as an aborted run's late work is not
    # in AWS's history either.
    redriven = {
        **record,
        "events": events,
        "mockAttempts": dict(record.get("mockAttempts") or {}),
        "status": "RUNNING",
        "stopDate": None,
        "output": None,
        "error": None,
        "cause": None,
        "redriveCount": int(record.get("redriveCount") or 0) + 1,
        "redriveDate": redrive_date,
        DEFINITION_KEY: definition,
    }
    sfn._executions[arn] = redriven
    sfn._add_event(
        redriven,
        "ExecutionRedriven",
        {"executionRedrivenEventDetails": {"redriveCount": redriven["redriveCount"]}},
    )
    tokens.remember(arn, token, now, redrive_date)
    sfn._emit_execution_status_event(redriven)
    context = contextvars.copy_context()
    threading.Thread(
        target=context.run,
        args=(run_redriven, sfn, redriven, definition, start, parsed_input),
        name="sfn-redrive",
        daemon=True,
    ).start()
    sfn.logger.info("Step Functions execution redriven: %s", arn)
    return _answer(sfn, {"redriveDate": redrive_date})


def _error(sfn: Any, code: str, message: str) -> Response:
    response: Response = sfn.error_response_json(code, message, 400)
    return response


def _answer(sfn: Any, body: Any) -> Response:
    response: Response = sfn.json_response(body)
    return response


def _body(response: Response) -> Any:
    try:
        return json.loads(response[2] or b"{}")
    except ValueError:
        return None


def with_redrive_fields(sfn: Any, describe: Callable[[Any], Response]) -> Callable[[Any], Response]:
    """DescribeExecution, with the execution's redrive fields."""

    def describe_with_redrive(data: Any) -> Response:
        response = describe(data)
        body = _body(response)
        record = sfn._executions.get(data.get("executionArn")) if isinstance(data, dict) else None
        if response[0] != 200 or not isinstance(body, dict) or record is None:
            return response
        machine = sfn._state_machines.get(record.get("stateMachineArn"))
        body.update(redrive_fields(record, machine, time.time()))
        return _answer(sfn, body)

    return describe_with_redrive


def with_redrive_listing(sfn: Any, list_executions: Callable[[Any], Response]) -> Callable[[Any], Response]:
    """ListExecutions, with each execution's redriveCount and redriveDate, and AWS's ``redriveFilter``."""

    def list_with_redrive(data: Any) -> Response:
        wanted = data.get("redriveFilter") if isinstance(data, dict) else None
        if wanted not in (None, "REDRIVEN", "NOT_REDRIVEN"):
            return _error(
                sfn, "ValidationException", f"redriveFilter must be REDRIVEN or NOT_REDRIVEN, not {wanted}"
            )
        response = list_executions(data)
        body = _body(response)
        if response[0] != 200 or not isinstance(body, dict):
            return response
        items = []
        for item in body.get("executions") or []:
            record = sfn._executions.get(item.get("executionArn")) or {}
            count = int(record.get("redriveCount") or 0)
            if (wanted == "REDRIVEN" and not count) or (wanted == "NOT_REDRIVEN" and count):
                continue
            item["redriveCount"] = count
            if record.get("redriveDate"):
                item["redriveDate"] = record["redriveDate"]
            items.append(item)
        body["executions"] = items
        return _answer(sfn, body)

    return list_with_redrive


def sorting_by_redrive(sfn: Any) -> Callable[[Mapping[str, Any]], tuple[str, str]]:
    """ListExecutions' order as AWS's: a running execution by its redriveDate when it was redriven."""

    def sort_key(item: Mapping[str, Any]) -> tuple[str, str]:
        record = sfn._executions.get(item["executionArn"]) or {}
        moment = item.get("stopDate") or record.get("redriveDate") or item["startDate"]
        return (str(moment), str(item["executionArn"]))

    return sort_key


def remembering_definitions(sfn: Any, start: Callable[[Any], Response]) -> Callable[[Any], Response]:
    """StartExecution, keeping the definition the execution starts with: a redrive runs that one."""

    def start_remembering(data: Any) -> Response:
        response = start(data)
        body = _body(response)
        if response[0] == 200 and isinstance(body, dict):
            record = sfn._executions.get(body.get("executionArn"))
            machine = sfn._state_machines.get(record.get("stateMachineArn")) if record else None
            if record is not None and machine is not None:
                with contextlib.suppress(TypeError, ValueError):
                    record[DEFINITION_KEY] = json.loads(machine["definition"])
        return response

    return start_remembering


def keeping_variables(assign: Callable[..., Any]) -> Callable[..., Any]:
    """The engine's JSONata ``Assign``, keeping a reference to the execution's variables for a redrive."""

    def assign_keeping(state_def: Any, raw_input: Any, ctx: Any, *args: Any, **kwargs: Any) -> Any:
        result = assign(state_def, raw_input, ctx, *args, **kwargs)
        # A Map iteration works on a copy of the context: its variables are its own.
        if isinstance(ctx, dict) and "Map" not in ctx and isinstance(ctx.get("variables"), dict):
            execution_id = (ctx.get("Execution") or {}).get("Id")
            if execution_id:
                VARIABLES[str(execution_id)] = ctx["variables"]
        return result

    return assign_keeping


def with_redrive_action(sfn: Any, handle_request: Callable[..., Any]) -> Callable[..., Any]:
    """The Step Functions endpoint, answering ``RedriveExecution`` as well."""

    async def handle_with_redrive(
        method: str, path: str, headers: Mapping[str, str], body: bytes, query: Any
    ) -> Any:
        target = headers.get("x-amz-target", "")
        if target.split(".")[-1] != "RedriveExecution":
            return await handle_request(method, path, headers, body, query)
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return _error(sfn, "SerializationException", "Invalid JSON")
        if not isinstance(data, dict):
            return _error(sfn, "SerializationException", "Invalid JSON")
        return sfn._finalize_response(redrive_execution(sfn, data))

    return handle_with_redrive


def with_reset(reset: Callable[[], Any]) -> Callable[[], Any]:
    """The engine's Step Functions reset, forgetting the redrives' client tokens and variables too."""

    def reset_all() -> Any:
        TOKENS.clear()
        VARIABLES.clear()
        return reset()

    return reset_all


def apply_redrive() -> None:
    """Patch the engine: RedriveExecution, and the redrive fields of DescribeExecution and ListExecutions."""
    from ministack.services import stepfunctions as sfn

    sfn.handle_request = with_redrive_action(sfn, sfn.handle_request)
    sfn._describe_execution = with_redrive_fields(sfn, sfn._describe_execution)
    sfn._list_executions = with_redrive_listing(sfn, sfn._list_executions)
    sfn._execution_sort_key = sorting_by_redrive(sfn)
    sfn._start_execution = remembering_definitions(sfn, sfn._start_execution)
    sfn._apply_state_assign = keeping_variables(sfn._apply_state_assign)
    sfn.reset = with_reset(sfn.reset)
