"""Chaos runs: many orders under random faults, and a checker that proves nothing was lost or done twice.

``run_chaos`` plans seeded orders (random items, some beyond stock or the card limit, each with a
random mix of the sandbox's faults, some POSTed twice with one key, some sagas replayed), places
them through the HTTP API with bounded concurrency, waits until everything is quiet, and calls the
checker. The checker, ``check`` (or ``check_records`` on records already read), reads only the
system's own records: the tables, the saga executions and their histories, the outbox and its
on-failure queue. The CLI, the tests and the pytest plugin all call these.
"""

from __future__ import annotations

from sandbox.chaos.check import (
    AT_MOST_ONCE,
    COMPENSATED,
    IMPLIED,
    NO_SECOND_ORDER,
    ONE_SAGA,
    PUBLISHED,
    ChaosVerdict,
    check,
    check_records,
    expected_compensations,
)
from sandbox.chaos.outcomes import implied_outcome
from sandbox.chaos.plan import (
    FAULT_KINDS,
    ChaosConfig,
    fault_kinds,
    parse_fault_kinds,
    plan_chaos,
    planned_kinds,
)
from sandbox.chaos.records import ChaosRecords, SagaExecution, StepRecord, read_records, steps_of
from sandbox.chaos.report import ChaosReport
from sandbox.chaos.run import run_chaos

__all__ = [
    "AT_MOST_ONCE",
    "COMPENSATED",
    "FAULT_KINDS",
    "IMPLIED",
    "NO_SECOND_ORDER",
    "ONE_SAGA",
    "PUBLISHED",
    "ChaosConfig",
    "ChaosRecords",
    "ChaosReport",
    "ChaosVerdict",
    "SagaExecution",
    "StepRecord",
    "check",
    "check_records",
    "expected_compensations",
    "fault_kinds",
    "implied_outcome",
    "parse_fault_kinds",
    "plan_chaos",
    "planned_kinds",
    "read_records",
    "run_chaos",
    "steps_of",
]
