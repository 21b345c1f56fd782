"""The fault kinds the CLI's help text names, as plain tuples.

Their sources (sandbox.faults, sandbox.chaos.plan, sandbox.saga_chaos) load the engine client,
the bench and the trace readers: the CLI would pay for all of them on every `--help`. These
copies load nothing; tests/unit/test_cli_imports.py holds each equal to its source.
"""

from __future__ import annotations

# sandbox.faults.KINDS: what a fault rule breaks (`sandbox faults add TARGET KIND`).
RULE_KINDS = (
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
# sandbox.chaos.FAULT_KINDS: the faults `sandbox chaos` mixes into the demo's orders.
ORDER_FAULT_KINDS = ("fail", "flaky", "duplicate-delivery", "crash", "timeout", "hang", "poison", "replay")
# sandbox.saga_chaos.CHAOS_KINDS: the faults `sandbox chaos` draws over any saga's Lambda tasks.
SAGA_FAULT_KINDS = ("error", "error-after", "throttle", "delay", "timeout")
