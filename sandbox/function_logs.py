"""A stack's function logs as one object: which functions, read once or followed until told to stop.

`sandbox logs` parses flags and prints what this returns; a console or a test reads the same lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sandbox.logs import LogFollower, LogLine, choose_functions, read_lines, stack_functions
from sandbox.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

FOLLOW_INTERVAL = 0.5  # seconds between polls of the log groups while following


@dataclass(frozen=True)
class FunctionLogs:
    """The log groups of some of a stack's functions, narrowed to one order and a time window."""

    client: CloudWatchLogsClient
    functions: dict[str, str]  # label (short name, else logical id) -> physical function name
    start_ms: int | None = None
    order_id: str | None = None
    is_quiet_included: bool = False  # also requests that logged only START/END/REPORT

    @classmethod
    def open(
        cls,
        stack: LocalStack,
        region: str,
        stack_name: str,
        *,
        function: str | None = None,
        order_id: str | None = None,
        since: timedelta | None = None,
        is_quiet_included: bool = False,
    ) -> FunctionLogs:
        """The stack's functions (or the one named by its logical id, name or short name), from ``since`` ago on."""
        functions = stack_functions(
            stack.client("cloudformation", region), stack.client("lambda", region), stack_name
        )
        start_ms = int((time.time() - since.total_seconds()) * 1000) if since else None
        return cls(stack.client("logs", region), choose_functions(functions, function), start_ms, order_id,
                   is_quiet_included)  # fmt: skip

    def read(self) -> list[LogLine]:
        """Every line so far, in time order."""
        return read_lines(
            self.client, self.functions, start_ms=self.start_ms, order_id=self.order_id,
            is_quiet_included=self.is_quiet_included,
        )  # fmt: skip

    def follower(self) -> LogFollower:
        """New lines from the window's start (or from now, without one), poll by poll."""
        start_ms = self.start_ms if self.start_ms is not None else int(time.time() * 1000)
        return LogFollower(self.client, self.functions, start_ms=start_ms, order_id=self.order_id,
                           is_quiet_included=self.is_quiet_included)  # fmt: skip


def follow(
    poll: Callable[[], list[LogLine]],
    emit: Callable[[LogLine], None],
    should_stop: Callable[[], bool],
    *,
    interval: float = FOLLOW_INTERVAL,
) -> None:
    """Emit each poll's new lines, ``interval`` seconds apart, until ``should_stop()``."""
    while not should_stop():
        for line in poll():
            emit(line)
        if not should_stop():
            time.sleep(interval)
