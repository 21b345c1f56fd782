"""The functions' logs: find each function's log group, fetch its events, parse and filter them."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sandbox.errors import UsageError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import FilterLogEventsRequestTypeDef

# The functions by their POWERTOOLS_SERVICE_NAME, in the order an order meets them.
SERVICE_NAMES = (
    "order-api",
    "outbox-publisher",
    "inventory",
    "payment",
    "shipping",
    "order-status",
    "notifications",
)
PLATFORM = "PLATFORM"  # the runtime's START / END / REPORT lines
# Keys every Powertools line carries; what is left is what the handler chose to log.
STANDARD_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "xray_trace_id",
        "sampling_rate",
    }
)
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PLATFORM_LINE = re.compile(r"^(START|END|REPORT) RequestId: (?P<id>[\w-]+)")
_DURATION = re.compile(r"\bDuration: (?P<ms>[\d.]+) ms")
_TRACEBACK = "Traceback (most recent call last)"


class LogsError(UsageError):
    """A logs request the sandbox cannot serve (unknown function, bad --since)."""


def parse_since(text: str) -> timedelta:
    """``30s``, ``5m``, ``1h`` or ``2d`` as a duration."""
    match = _SINCE.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise LogsError(f"--since {text!r}: expected a positive number and a unit, e.g. 30s, 5m, 1h or 2d")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True)
class LogLine:
    """One log line of one function, parsed."""

    function: str
    at: datetime
    level: str
    message: str
    stream: str
    request_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    stamp_ms: int = 0  # the event's own CloudWatch timestamp

    @property
    def extras(self) -> dict[str, Any]:
        """What the handler logged beyond the standard Powertools keys."""
        return {key: value for key, value in self.fields.items() if key not in STANDARD_KEYS}

    def mentions(self, text: str) -> bool:
        return text in self.raw

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "function": self.function,
            "level": self.level,
            "message": self.message,
            "requestId": self.request_id,
            "fields": self.extras,
        }


@dataclass(frozen=True)
class Invocation:
    """The lines one request of one function wrote, from START to REPORT."""

    function: str
    stream: str
    request_id: str
    lines: tuple[LogLine, ...]
    started_at: datetime
    duration_ms: int | None

    @property
    def has_failed(self) -> bool:
        return any(line.level in ("ERROR", "CRITICAL") for line in self.lines)

    def messages(self, message: str) -> list[LogLine]:
        """The structured lines with this message."""
        return [line for line in self.lines if line.fields and line.message == message]


def iso(moment: datetime) -> str:
    """A UTC ISO 8601 time with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_millis(millis: int | float) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _powertools_time(text: Any) -> datetime | None:
    """Powertools' ``2026-11-23 00:24:06,031+0000`` (or an ISO time), or None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f%z")
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace(",", "."))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_events(function: str, events: Iterable[dict[str, Any]]) -> list[LogLine]:
    """CloudWatch Logs events of one function as log lines, in the order given.

    Lines between ``START`` and ``END`` belong to that request; plain lines after a
    ``Traceback`` line (the runtime's report of an exception) are errors.
    """
    lines: list[LogLine] = []
    request_of_stream: dict[str, str | None] = {}
    failing_streams: set[str] = set()
    for event in events:
        stream = str(event.get("logStreamName", ""))
        text = str(event.get("message", "")).rstrip("\n")
        stamp = int(event.get("timestamp", 0))
        at = from_millis(stamp)
        platform = _PLATFORM_LINE.match(text)
        if platform:
            kind, request_id = platform.group(1), platform.group("id")
            request_of_stream[stream] = request_id if kind == "START" else None
            if kind == "START":
                failing_streams.discard(stream)
            lines.append(LogLine(function, at, PLATFORM, text, stream, request_id, raw=text, stamp_ms=stamp))
            continue
        request_id = request_of_stream.get(stream)
        fields = _json_fields(text)
        if fields is not None:
            level = str(fields.get("level", "INFO")).upper()
            message = str(fields.get("message", ""))
            at = _powertools_time(fields.get("timestamp")) or at
            request_id = str(fields.get("function_request_id") or request_id or "") or None
        else:
            if text.startswith(_TRACEBACK):
                failing_streams.add(stream)
            level = "ERROR" if stream in failing_streams else "INFO"
            message, fields = text, {}
        lines.append(LogLine(function, at, level, message, stream, request_id, fields, text, stamp))
    return _start_lines_at_start(lines)


def _start_lines_at_start(lines: list[LogLine]) -> list[LogLine]:
    """Date each START line at its request's start (the engine stamps every line at the end)."""
    starts: dict[tuple[str, str | None], datetime] = {
        (invocation.stream, invocation.request_id): invocation.started_at
        for invocation in group_invocations(lines)
    }
    return [
        replace(line, at=min(line.at, starts[(line.stream, line.request_id)]))
        if line.level == PLATFORM
        and line.raw.startswith("START")
        and (line.stream, line.request_id) in starts
        else line
        for line in lines
    ]


def drop_quiet_requests(lines: Iterable[LogLine]) -> list[LogLine]:
    """Leave out requests that logged nothing but START/END/REPORT (e.g. the CLI's GET polls)."""
    lines = list(lines)
    talking = {(line.function, line.stream, line.request_id) for line in lines if line.level != PLATFORM}
    return [
        line
        for line in lines
        if line.level != PLATFORM or (line.function, line.stream, line.request_id) in talking
    ]


def _json_fields(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def group_invocations(lines: Iterable[LogLine]) -> list[Invocation]:
    """The lines grouped by request, each with its start time and duration (from REPORT)."""
    grouped: dict[tuple[str, str, str], list[LogLine]] = {}
    for line in lines:
        if line.request_id:
            grouped.setdefault((line.function, line.stream, line.request_id), []).append(line)
    invocations = []
    for (function, stream, request_id), members in grouped.items():
        duration: int | None = None
        started = min(line.at for line in members)
        for line in members:
            found = _DURATION.search(line.raw) if line.level == PLATFORM else None
            if found and line.raw.startswith("REPORT"):
                duration = round(float(found.group("ms")))
                # The engine stamps every line when the invocation ends; AWS stamps START at the start.
                started = min(started, line.at - timedelta(milliseconds=duration))
        invocations.append(Invocation(function, stream, request_id, tuple(members), started, duration))
    return sorted(invocations, key=lambda invocation: invocation.started_at)


def select_order(lines: Iterable[LogLine], order_id: str) -> list[LogLine]:
    """Every line of the requests that mention the order (START to REPORT, tracebacks too)."""
    lines = list(lines)
    matching = {
        (line.function, line.stream, line.request_id)
        for line in lines
        if line.request_id and line.mentions(order_id)
    }
    return [
        line
        for line in lines
        if (line.function, line.stream, line.request_id) in matching
        or (not line.request_id and line.mentions(order_id))
    ]


def sort_lines(lines: Iterable[LogLine]) -> list[LogLine]:
    """Lines in time order, each request's lines together from its START, in the order written."""
    lines = list(lines)
    request_start: dict[tuple[str, str, str | None], datetime] = {}
    for line in lines:
        key = (line.function, line.stream, line.request_id)
        if line.request_id and (key not in request_start or line.at < request_start[key]):
            request_start[key] = line.at

    def position(pair: tuple[int, LogLine]) -> tuple[datetime, int]:
        index, line = pair
        return request_start.get((line.function, line.stream, line.request_id), line.at), index

    return [line for _, line in sorted(enumerate(lines), key=position)]


# ------------------------------------------------------------------ engine


@dataclass(frozen=True)
class StackFunction:
    """One Lambda function of the stack: its logical id, its (physical) name, its short name."""

    logical_id: str
    name: str
    short_name: str | None = None  # POWERTOOLS_SERVICE_NAME, when no other function of the stack has it

    @property
    def label(self) -> str:
        """How its lines are labelled: the short name (the demo's ``payment``), else the logical id."""
        return self.short_name or self.logical_id

    def is_named(self, wanted: str) -> bool:
        return wanted in (self.logical_id, self.name, self.short_name)


def stack_functions(
    cfn: CloudFormationClient, lambda_client: LambdaClient, stack_name: str
) -> list[StackFunction]:
    """Every Lambda function of the stack, the demo's in the order an order meets them."""
    logical_of: dict[str, str] = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            physical = resource.get("PhysicalResourceId")
            if resource["ResourceType"] == "AWS::Lambda::Function" and physical:
                logical_of[physical] = resource["LogicalResourceId"]
    services: dict[str, str] = {}
    if logical_of:
        for listing in lambda_client.get_paginator("list_functions").paginate():
            for function in listing["Functions"]:
                variables = (function.get("Environment") or {}).get("Variables") or {}
                service = variables.get("POWERTOOLS_SERVICE_NAME")
                if function["FunctionName"] in logical_of and service:
                    services[function["FunctionName"]] = service
    # Projects often give every function the same service name: a shared one names none of them.
    counts = Counter(services.values())
    functions = [
        StackFunction(
            logical,
            physical,
            services[physical] if physical in services and counts[services[physical]] == 1 else None,
        )
        for physical, logical in logical_of.items()
    ]
    return sorted(functions, key=lambda function: (_service_rank(function.short_name), function.label))


def function_names(cfn: CloudFormationClient, lambda_client: LambdaClient, stack_name: str) -> dict[str, str]:
    """The stack's functions: label (short name, else logical id) -> physical function name."""
    return {function.label: function.name for function in stack_functions(cfn, lambda_client, stack_name)}


def _service_rank(service: str | None) -> int:
    return SERVICE_NAMES.index(service) if service in SERVICE_NAMES else len(SERVICE_NAMES)


def choose_functions(functions: list[StackFunction], wanted: str | None) -> dict[str, str]:
    """All the stack's functions (label -> name), or the one asked for by logical id, name or short name."""
    if wanted is None:
        return {function.label: function.name for function in functions}
    for function in functions:
        if function.is_named(wanted):
            return {function.label: function.name}
    known = ", ".join(
        f"{function.logical_id} ({function.short_name})" if function.short_name else function.logical_id
        for function in functions
    )
    raise LogsError(
        f"the stack has no function {wanted!r}",
        hint=f"give a logical id, a function name or a short name: {known}"
        if known
        else "the stack has no Lambda function",
    )


def fetch_events(
    logs: CloudWatchLogsClient, function_name: str, *, start_ms: int | None = None
) -> list[dict[str, Any]]:
    """Every event of the function's log group from ``start_ms`` on (none before its first run)."""
    request: FilterLogEventsRequestTypeDef = {"logGroupName": f"/aws/lambda/{function_name}"}
    if start_ms is not None:
        request["startTime"] = start_ms
    events: list[dict[str, Any]] = []
    try:
        while True:
            page = logs.filter_log_events(**request)
            events.extend(dict(event) for event in page.get("events", []))
            token = page.get("nextToken")
            if not token or token == request.get("nextToken"):
                return events
            request["nextToken"] = token
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return events  # the function has not run yet: its log group does not exist
        raise


def read_lines(
    logs: CloudWatchLogsClient,
    functions: dict[str, str],
    *,
    start_ms: int | None = None,
    order_id: str | None = None,
    is_quiet_included: bool = True,
) -> list[LogLine]:
    """The functions' log lines since ``start_ms``, only the order's requests when one is given."""
    lines: list[LogLine] = []
    for short_name, physical in functions.items():
        parsed = parse_events(short_name, fetch_events(logs, physical, start_ms=start_ms))
        lines.extend(select_order(parsed, order_id) if order_id else parsed)
    return sort_lines(lines if is_quiet_included else drop_quiet_requests(lines))


class LogFollower:
    """Polls the functions' log groups and returns only lines not returned before."""

    def __init__(
        self,
        logs: CloudWatchLogsClient,
        functions: dict[str, str],
        *,
        start_ms: int,
        order_id: str | None = None,
        is_quiet_included: bool = True,
    ):
        self.logs = logs
        self.functions = functions
        self.order_id = order_id
        self.is_quiet_included = is_quiet_included
        self.start_ms = start_ms
        self._seen: set[tuple[str, str, int, int]] = set()
        self._matched_requests: set[tuple[str, str, str | None]] = set()

    def poll(self) -> list[LogLine]:
        """The lines written since the last poll."""
        fresh: list[LogLine] = []
        newest = self.start_ms
        for short_name, physical in self.functions.items():
            events = fetch_events(self.logs, physical, start_ms=self.start_ms)
            new_events = []
            occurrences: dict[tuple[str, int], int] = {}
            for event in events:
                stamp = int(event.get("timestamp", 0))
                stream = str(event.get("logStreamName", ""))
                slot = (stream, stamp)
                occurrences[slot] = occurrences.get(slot, -1) + 1
                key = (short_name, stream, stamp, occurrences[slot])
                newest = max(newest, stamp)
                if key not in self._seen:
                    self._seen.add(key)
                    new_events.append(event)
            parsed = parse_events(short_name, new_events)
            fresh.extend(self._keep(parsed if self.is_quiet_included else drop_quiet_requests(parsed)))
        # Events stamped with the newest time may still grow; older ones are settled.
        self._seen = {key for key in self._seen if key[2] >= newest}
        self.start_ms = newest
        return sort_lines(fresh)

    def _keep(self, lines: list[LogLine]) -> list[LogLine]:
        if self.order_id is None:
            return lines
        for line in lines:
            if line.mentions(self.order_id):
                self._matched_requests.add((line.function, line.stream, line.request_id))
        return [
            line
            for line in lines
            if (line.function, line.stream, line.request_id) in self._matched_requests
            and (line.request_id or line.mentions(self.order_id))
        ]
