"""The fault kinds users name, in one module that imports nothing: the CLI's help names them too.

``RULE_KINDS``: what a fault rule breaks at the Lambda invoke boundary (``sandbox faults add``,
``sandbox execute --fault``; the engine's patch has its own copy, ``engine_patches.faults.KINDS``,
held equal by a test). ``SAGA_CHAOS_KINDS``: what ``sandbox chaos`` draws over any saga's Lambda
tasks.
"""

from __future__ import annotations

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
SAGA_CHAOS_KINDS = ("error", "error-after", "throttle", "delay", "timeout")
