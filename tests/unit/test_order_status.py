"""Order status transitions: forward only, from PENDING to a terminal status."""

from __future__ import annotations

import pytest

from shared import status
from shared.status import COMPLETED, FAILED, PENDING, allowed_predecessors, is_allowed_transition

# ---------------------------------------------------------------- status


@pytest.mark.parametrize("target", [COMPLETED, FAILED])
def test_pending_may_move_to_a_terminal_status(target: str) -> None:
    assert is_allowed_transition(PENDING, target)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (COMPLETED, FAILED),
        (FAILED, COMPLETED),
        (COMPLETED, PENDING),
        (FAILED, PENDING),
        (PENDING, PENDING),
        (COMPLETED, COMPLETED),
        ("UNKNOWN", COMPLETED),
    ],
)
def test_terminal_or_unknown_statuses_never_move(current: str, new: str) -> None:
    assert not is_allowed_transition(current, new)


def test_terminal_statuses_are_completed_and_failed() -> None:
    assert {COMPLETED, FAILED} == status.TERMINAL_STATUSES
    for terminal in status.TERMINAL_STATUSES:
        assert status.TRANSITIONS[terminal] == frozenset()


@pytest.mark.parametrize(
    ("target", "predecessors"),
    [(COMPLETED, [PENDING]), (FAILED, [PENDING]), (PENDING, [])],
)
def test_allowed_predecessors(target: str, predecessors: list[str]) -> None:
    assert allowed_predecessors(target) == predecessors


def test_allowed_predecessors_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown order status 'SHIPPED'"):
        allowed_predecessors("SHIPPED")
