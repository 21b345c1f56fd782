"""The demo's order fault kinds the CLI's help text names, as a plain tuple.

Their source (sandbox.chaos.plan) loads the bench and the demo's order model: the CLI would pay
for them on every `--help`. This copy loads nothing; tests/unit/test_cli_imports.py holds it
equal to its source. (Rule kinds and saga chaos kinds come from sandbox.fault_kinds.)
"""

from __future__ import annotations

# sandbox.chaos.FAULT_KINDS: the faults `sandbox chaos` mixes into the demo's orders.
ORDER_FAULT_KINDS = ("fail", "flaky", "duplicate-delivery", "crash", "timeout", "hang", "poison", "replay")
