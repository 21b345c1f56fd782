"""Order statuses and the forward-only transitions between them."""

from __future__ import annotations

PENDING = "PENDING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED})

# status -> the statuses it may move to; terminal statuses move nowhere.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({COMPLETED, FAILED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
}


def allowed_predecessors(status: str) -> list[str]:
    """The statuses from which an order may move to ``status``."""
    if status not in TRANSITIONS:
        raise ValueError(f"unknown order status {status!r}")
    return sorted(source for source, targets in TRANSITIONS.items() if status in targets)


def is_allowed_transition(current: str, new: str) -> bool:
    """Whether an order in ``current`` may move to ``new``."""
    return new in TRANSITIONS.get(current, frozenset())
