"""wait_until: the sandbox's one polling helper."""

from __future__ import annotations

import time

import pytest

from sandbox import waiting
from sandbox.errors import SandboxError, WaitTimeoutError
from sandbox.waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    # GIVEN a check that becomes true on its third call
    answers = iter([None, 0, {"status": "done"}, {"status": "later"}])
    calls: list[int] = []

    def check() -> dict | None:
        calls.append(1)
        return next(answers)

    # WHEN waiting THEN the truthy value itself is returned, and polling stops there
    assert wait_until(check, timeout=5, what="x", interval=0.001) == {"status": "done"}
    assert len(calls) == 3


def test_an_immediately_true_check_does_not_sleep() -> None:
    started = time.monotonic()
    assert wait_until(lambda: "ok", timeout=0, what="x", interval=10) == "ok"
    assert time.monotonic() - started < 1


def test_times_out_naming_what_it_waited_for() -> None:
    calls: list[int] = []

    def never() -> None:
        calls.append(1)

    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        wait_until(never, timeout=0.02, what="the engine on port 4999", interval=0.005, max_interval=0.01)
    assert time.monotonic() - started < 1
    assert str(caught.value) == "timed out after 0.02s waiting for the engine on port 4999"
    assert isinstance(caught.value, SandboxError)
    assert len(calls) >= 2  # checked at least once more after the first sleep


def test_errors_from_the_check_propagate() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        wait_until(broken, timeout=1, what="x")


def test_the_interval_grows_by_the_given_factor_up_to_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a recorded sleep and a check that passes on the sixth call
    slept: list[float] = []
    monkeypatch.setattr(waiting.time, "sleep", slept.append)
    calls = iter([None] * 5 + ["done"])
    # WHEN waiting with a slow growth
    assert (
        wait_until(lambda: next(calls), timeout=60, what="x", interval=0.1, max_interval=0.13, growth=1.1)
        == "done"
    )
    # THEN each pause is 1.1 times the last, never above the cap
    assert slept == pytest.approx([0.1, 0.11, 0.121, 0.13, 0.13])
