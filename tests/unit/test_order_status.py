"""Order status transitions (forward only) and fault injection in the saga steps."""

from __future__ import annotations

import pytest

from shared import faults as faults_module
from shared import status
from shared.errors import InjectedFailure, StepError, TransientStepError
from shared.faults import STEP_SERVICES, STEP_TIMEOUT_SECONDS, check_faults, is_fault_injection_enabled
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


# ---------------------------------------------------------------- faults


@pytest.fixture
def faults_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_INJECTION", "enabled")


@pytest.mark.parametrize("value", [None, "disabled", "Enabled", "true", ""])
def test_fault_injection_is_off_unless_exactly_enabled(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("FAULT_INJECTION", raising=False)
    else:
        monkeypatch.setenv("FAULT_INJECTION", value)
    assert not is_fault_injection_enabled()
    # GIVEN a disabled stack WHEN an order carries faults THEN no step ever fails for them
    for service in STEP_SERVICES:
        check_faults({"fail": service, "flaky": {service: 3}}, service, retry_count=0)


@pytest.mark.usefixtures("faults_enabled")
@pytest.mark.parametrize("faults", [None, {}])
def test_no_faults_never_raise(faults: dict | None) -> None:
    for service in STEP_SERVICES:
        check_faults(faults, service, retry_count=0)


@pytest.mark.usefixtures("faults_enabled")
@pytest.mark.parametrize("failing", STEP_SERVICES)
def test_fail_raises_only_in_its_own_service(failing: str) -> None:
    # GIVEN an order that asks `failing` to fail
    faults = {"fail": failing}
    for service in STEP_SERVICES:
        if service == failing:
            # THEN that service fails for good, on every attempt
            for retry_count in (0, 1, 5):
                with pytest.raises(InjectedFailure, match=f"injected failure in {failing}"):
                    check_faults(faults, service, retry_count)
        else:
            # AND the other services are untouched
            check_faults(faults, service, retry_count=0)


@pytest.mark.usefixtures("faults_enabled")
def test_injected_failure_is_a_business_error_not_a_transient_one() -> None:
    assert issubclass(InjectedFailure, StepError)
    assert not issubclass(InjectedFailure, TransientStepError)


@pytest.mark.usefixtures("faults_enabled")
@pytest.mark.parametrize("attempts", [1, 2, 3])
def test_flaky_fails_the_first_n_attempts_then_passes(attempts: int) -> None:
    faults = {"flaky": {"payment": attempts}}
    for retry_count in range(attempts):
        with pytest.raises(TransientStepError, match=f"attempt {retry_count + 1} of {attempts} failing"):
            check_faults(faults, "payment", retry_count)
    # THEN the attempt with RetryCount == N passes, and so do later ones
    check_faults(faults, "payment", attempts)
    check_faults(faults, "payment", attempts + 1)


@pytest.mark.usefixtures("faults_enabled")
def test_flaky_applies_only_to_its_service() -> None:
    faults = {"flaky": {"shipping": 2}}
    check_faults(faults, "inventory", 0)
    check_faults(faults, "payment", 0)
    with pytest.raises(TransientStepError):
        check_faults(faults, "shipping", 0)


@pytest.mark.usefixtures("faults_enabled")
def test_fail_wins_over_flaky_for_the_same_service() -> None:
    with pytest.raises(InjectedFailure):
        check_faults({"fail": "payment", "flaky": {"payment": 1}}, "payment", 5)


@pytest.mark.parametrize(("fault", "slow_attempts"), [("timeout", [0]), ("hang", [0, 1, 2, 3])])
def test_slow_faults_outlive_the_step_timeout_on_the_attempts_they_name(
    monkeypatch: pytest.MonkeyPatch, fault: str, slow_attempts: list[int]
) -> None:
    # GIVEN a recorded sleep instead of a real one
    monkeypatch.setenv("FAULT_INJECTION", "enabled")
    slept: list[int] = []
    monkeypatch.setattr(faults_module.time, "sleep", lambda seconds: slept.append(seconds))
    for attempt in range(4):
        # WHEN each attempt of the payment step checks its faults
        before = len(slept)
        check_faults({fault: "payment"}, "payment", attempt)
        # THEN only the named attempts outlive the Task's timeout, and other services are untouched
        assert (len(slept) > before) == (attempt in slow_attempts)
        check_faults({fault: "payment"}, "shipping", attempt)
    assert all(seconds > STEP_TIMEOUT_SECONDS for seconds in slept)
